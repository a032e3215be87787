"""The many-files and start-up part of ``kstream bench --files``, on tiny sets."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from bench.support import AGE

from kstream.bench import many


@pytest.fixture
def keyfile(tmp_path: Path) -> Path:
    path = tmp_path / "key"
    path.write_text("00" * 16 + "\n")
    return path


def test_many_files_rows_compare_kstream_with_the_loops(tmp_path: Path, keyfile: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    rows = many.run_many(
        str(tmp_path),
        str(keyfile),
        "00" * 16,
        "11" * 16,
        128,
        repeat=2,
        warmup=0,
        sets=((4, 4096, 0.35, 0.5), (2, 70_000, 0.6, None)),
    )
    sets = {row["set"] for row in rows}
    assert sets == {"4 files of 4 KiB", "2 files of 68.4 KiB"}
    judged = [row for row in rows if "goal" in row]
    # one kstream row per set against openssl, and one against age where it is installed
    assert len(judged) == 2 + (1 if AGE else 0)
    for row in judged:
        assert row["ratio"] > 0 and row["verdict"] in ("PASS", "MISS")
        expected = "PASS" if row["ratio"] <= float(row["goal"].split()[1].rstrip("x")) else "MISS"
        assert row["verdict"] == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == (
        ["age.key", "dec", "key"] if AGE else ["dec", "key"]
    )  # the sets are removed
    text = "\n".join(many.format_many(rows, []))
    assert "kstream (" in text and "shell loop: openssl enc" in text


def test_startup_rows(tmp_path: Path, keyfile: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    rows = many.run_startup(str(tmp_path), str(keyfile), "00" * 16, "11" * 16, 128, repeat=1)
    assert [row["id"] for row in rows] == ["python", "version", "openssl-small", "one-small"]
    python = rows[0]["median_s"]
    for row in rows:
        assert 0 < row["median_s"] < 30
        if row["id"] in many.STARTUP_GOALS:
            assert row["verdict"] == (
                "PASS" if row["median_s"] <= many.STARTUP_GOALS[row["id"]] else "MISS"
            )
            assert abs(row["vs_python"] - row["median_s"] / python) < 0.02 * row["vs_python"]
        else:
            assert "verdict" not in row and "vs_python" not in row
    text = "\n".join(many.format_many([], rows))
    assert "ms  goal <= 20 ms" in text and "openssl enc, one 4 KiB file" in text
    version = next(line for line in text.splitlines() if "kstream --version" in line)
    assert version.endswith(f"kstream --version ({rows[1]['vs_python']:.1f}x python -c pass)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key"]  # its files are removed
    assert os.environ["PYTHONDONTWRITEBYTECODE"] == "1"  # lifted for the runs only


def test_an_editable_install_is_named_under_the_start_up_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = [{"id": "python", "label": "python -c pass", "median_s": 0.01}]
    monkeypatch.setitem(sys.modules, "__editable___kstream_0_1_0_finder", sys)
    assert many.editable_install()
    assert "editable install" in many.format_many([], rows)[-1]
    monkeypatch.delitem(sys.modules, "__editable___kstream_0_1_0_finder")
    for name in [m for m in sys.modules if m.startswith("__editable__")]:
        monkeypatch.delitem(sys.modules, name)
    assert not many.editable_install()
    assert "editable" not in "\n".join(many.format_many([], rows))
