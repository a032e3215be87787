"""Running the ``kstream`` command in tests: as a subprocess (what users run) or in this
process (fast, and what monkeypatching needs), and checking its one-line errors."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from kstream.cli.main import main

KST = [sys.executable, "-m", "kstream"]


def kst(
    *args: object, input: bytes | None = None, check: bool = True, **kw: object
) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(
        [*KST, *map(str, args)], input=input, capture_output=True, timeout=120, **kw
    )  # type: ignore[call-overload]
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


def fails(*args: object, code: int, match: str, **kw: Any) -> str:
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


#: The start of the line on which :func:`modules_loaded_by`'s child lists its modules.
MODULES = "kstream-test-modules:"


def marked_line(stderr: str, marker: str) -> str:
    """The rest of the one line of ``stderr`` that starts with ``marker``: a child's report,
    read apart from whatever else reaches stderr (an interpreter's warnings, say)."""
    lines = [line[len(marker) :] for line in stderr.splitlines() if line.startswith(marker)]
    assert len(lines) == 1, stderr
    return lines[0]


def modules_loaded_by(*runs: Sequence[object], status: int | None = 0) -> set[str]:
    """Every module a fresh interpreter holds after running the CLI on each of ``runs``
    (stdout discarded); each run must end with ``status`` unless it is None."""
    argvs = [[str(a) for a in run] for run in runs]
    check = "" if status is None else f"    assert code == {status!r}, (argv, code)\n"
    code = (
        "import sys\nfrom kstream.cli.main import main\n"
        f"for argv in {argvs!r}:\n"
        "    try:\n        code = main(argv)\n"
        "    except SystemExit as exc:\n        code = exc.code\n"
        f"{check}"
        f"print({MODULES!r}, *sorted(sys.modules), file=sys.stderr)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        check=True,
    )
    return set(marked_line(proc.stderr, MODULES).split())


def keybytes(path: Path) -> bytes:
    """The key in a key file as ``kstream keygen`` writes it (hex text)."""
    return bytes.fromhex(path.read_text())
