"""The start-up part of ``kstream bench --files``: ratios to ``python -c pass``, measured in
a clean venv when kstream is an editable install."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kstream.bench import many, startup


def test_startup_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    key = tmp_path / "key"
    key.write_text("00" * 16 + "\n")
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    result = startup.run_startup(str(tmp_path), str(key), "00" * 16, "11" * 16, 128, repeat=1)
    rows = result["rows"]
    assert [row["id"] for row in rows] == [
        "python",
        "version",
        "floor",
        "openssl-small",
        "one-small",
    ]
    assert "ratio" not in rows[0]
    for row in rows:
        assert 0 < row["median_s"] < 30
    for row in rows[1:]:
        assert 0 < row["ratio_min"] <= row["ratio"] <= row["ratio_max"]
    if startup.editable_install():
        assert result["install"] == "a clean venv made for this run from this editable install"
    else:
        assert result["install"] == f"this install ({sys.prefix})"
    text = "\n".join(startup.format_startup(result))
    assert f"  measured in {result['install']}" in text
    version = next(line for line in text.splitlines() if line.endswith("kstream --version"))
    assert f"  {rows[1]['ratio']:.2f}x ({rows[1]['ratio_min']:.2f}-" in version
    assert not re.search(r"\b(PASS|MISS|goals?)\b", text)  # the goals: .ci/goals.py
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key"]  # its files are removed
    assert os.environ["PYTHONDONTWRITEBYTECODE"] == "1"  # lifted for the runs only


def test_the_clean_venv_runs_kstream_without_the_editable_hook(tmp_path: Path) -> None:
    if len(many.kstream_command()) != 1:
        pytest.skip("no kstream console script beside this interpreter")
    python, command = startup.clean_venv(str(tmp_path / "venv"))
    out = subprocess.run([*command, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("kstream ")
    probe = "import sys, kstream; print(kstream.__file__, sorted(sys.modules))"
    where, loaded = subprocess.run(  # (not from here: the source tree would come first)
        [python, "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path
    ).stdout.split(" ", 1)
    assert where.startswith(str(tmp_path / "venv"))  # the copy, not the source tree
    assert "__editable__" not in loaded
    compiled = tmp_path / "venv" / Path(where).parent.relative_to(tmp_path / "venv")
    assert list((compiled / "cli" / "__pycache__").glob("main.*.pyc"))  # compiled, as pip does


def test_a_script_that_imports_re_first_is_named(tmp_path: Path) -> None:
    script = tmp_path / "kstream"
    script.write_text("#!/bin/python\nimport re\nimport sys\nfrom kstream.cli import entry\n")
    assert "imports re before kstream" in startup._script_notes([str(script)])[0]
    script.write_text("#!/bin/python\nimport sys\nfrom kstream.cli import entry\n")
    assert startup._script_notes([str(script)]) == []
    assert startup._script_notes([sys.executable, "-m", "kstream"]) == [
        f"no console script: measured '{sys.executable} -m kstream'"
    ]


def test_an_editable_install_is_recognised(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m.startswith("__editable__")]:
        monkeypatch.delitem(sys.modules, name)
    assert not startup.editable_install()
    monkeypatch.setitem(sys.modules, "__editable___kstream_0_1_0_finder", sys)
    assert startup.editable_install()
