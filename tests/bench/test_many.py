"""The many-files part of ``kstream bench --files``, on tiny sets."""

from __future__ import annotations

import re
import shutil
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
        sets=((4, 4096), (2, 70_000)),
    )
    assert {(row["set"], row["files"], row["file_size"]) for row in rows} == {
        ("4 files of 4 KiB", 4, 4096),
        ("2 files of 68.4 KiB", 2, 70_000),
    }
    loops = ["openssl-loop", *(["age-loop"] if AGE else [])]
    times = {(row["files"], row["id"]): row["median_s"] for row in rows if "vs" not in row}
    assert sorted(times) == sorted((n, way) for n in (4, 2) for way in ("kstream", *loops))
    # kstream against each loop, set by set: the median of the ratios of the same rounds.
    ratios = [row for row in rows if "vs" in row]
    assert sorted((row["files"], row["vs"]) for row in ratios) == sorted(
        (n, loop) for n in (4, 2) for loop in loops
    )
    for row in ratios:
        assert row["id"] == "kstream" and row["baseline"].startswith("shell loop: ")
        assert 0 < row["ratio_min"] <= row["ratio"] <= row["ratio_max"]
    assert sorted(p.name for p in tmp_path.iterdir()) == (
        ["age.key", "dec", "key"] if AGE else ["dec", "key"]
    )  # the sets are removed
    text = "\n".join(many.format_many(rows))
    assert "x  4 files of 4 KiB: kstream vs shell loop: openssl enc" in text
    assert " s  2 files of 68.4 KiB: kstream encrypt FILE..., then kstream decrypt" in text
    assert not re.search(r"\b(PASS|MISS|goals?)\b", text)  # the goals: .ci/goals.py
