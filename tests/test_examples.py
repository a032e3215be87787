"""Every script in examples/ runs and reports success (so the examples never rot)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 3


def required_modules(script: Path) -> list[str]:
    """The modules a ``# requires: a, b.c`` line names: optional packages the example uses."""
    for line in script.read_text().splitlines():
        if line.startswith("# requires:"):
            return [m.strip() for m in line.removeprefix("# requires:").split(",") if m.strip()]
    return []


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script: Path, tmp_path: Path) -> None:
    for module in required_modules(script):
        pytest.importorskip(module, reason=f"{script.name} needs {module} (an optional package)")
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"round trip ok: True" in proc.stdout
