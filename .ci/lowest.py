"""Print pip constraints that pin every runtime dependency to the lowest version
pyproject.toml allows (``name>=X`` becomes ``name==X``), for CI's lowest-versions run.

A dependency without a ``>=`` lower bound is an error: the range would claim versions
nobody tests.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def lowest_pins(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    pins = []
    for dep in deps:
        requirement, _, marker = dep.partition(";")
        match = re.fullmatch(
            r"\s*([A-Za-z0-9_.\-]+)\s*>=\s*([0-9][0-9A-Za-z.]*)\s*(,.*)?", requirement
        )
        if match is None:
            sys.exit(f"lowest.py: {dep!r} has no '>=' lower bound")
        pin = f"{match[1]}=={match[2]}"
        pins.append(f"{pin}; {marker.strip()}" if marker.strip() else pin)
    return pins


if __name__ == "__main__":
    print("\n".join(lowest_pins()))
