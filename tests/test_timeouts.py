"""Every test has a time limit, so a hang fails with the test's name instead of using up
CI's time; kernel boots get their own, longer limit (tests/uml/plugin.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_suite_has_a_default_time_limit() -> None:
    ini = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert 0 < float(ini["timeout"]) <= 300


def test_a_test_blocked_on_a_fifo_fails_with_its_name(tmp_path: Path) -> None:
    """The hang CI once met: ``open()`` of a FIFO whose other end never comes."""
    (tmp_path / "test_hang.py").write_text(
        textwrap.dedent("""
        import os

        def test_waits_for_a_writer_that_died(tmp_path):
            os.mkfifo(tmp_path / "f")
            open(tmp_path / "f", "rb")
    """)
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "--timeout",
            "2",
            "-q",
            str(tmp_path / "test_hang.py"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILED test_hang.py::test_waits_for_a_writer_that_died" in proc.stdout
    assert "Timeout" in proc.stdout
