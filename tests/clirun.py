"""Running the ``kstream`` command in tests: as a subprocess (what users run) or in this
process (fast, and what monkeypatching needs), and checking its one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kstream.cli.main import main

KST = [sys.executable, "-m", "kstream"]


def kst(*args: object, input: bytes | None = None, check: bool = True,
        **kw: object) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run([*KST, *map(str, args)], input=input, capture_output=True,
                          timeout=120, **kw)  # type: ignore[call-overload]
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr.decode()}")
    return proc  # type: ignore[no-any-return]


def one_error(err: str, match: str) -> str:
    """The single ``kstream: error:`` line of ``err`` (notices aside), checked for ``match``."""
    lines = [ln for ln in err.splitlines() if not ln.startswith("kstream: notice:")]
    assert len(lines) == 1 and lines[0].startswith("kstream: error: "), err
    assert "Traceback" not in err
    assert match in lines[0], lines[0]
    return lines[0]


def fails(*args: object, code: int, match: str, **kw: object) -> str:
    """Run kstream expecting one clean error line; return it."""
    proc = kst(*args, check=False, **kw)
    err = proc.stderr.decode()
    assert proc.returncode == code, err
    return one_error(err, match)


def run_main(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """The CLI in this process (fast: no interpreter start, which matters in UML)."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def keybytes(path: Path) -> bytes:
    """The key in a key file as ``kstream keygen`` writes it (hex text)."""
    return bytes.fromhex(path.read_text())
