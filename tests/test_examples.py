"""Every script in examples/ runs and reports success (so the examples never rot)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"round trip ok: True" in proc.stdout
