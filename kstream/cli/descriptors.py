"""Descriptors a key or passphrase is read from (``--key-fd N``, ``--passphrase-fd N``),
kept apart from the input.

A secret read from the input's own descriptor takes input data with it: the passphrase
reader reads in 4 KiB chunks and keeps only the first line, the key reader reads to the
end. Either way the run would encrypt or decrypt what is left and exit 0, so the overlap
is refused before anything is read.
"""

from __future__ import annotations

import argparse
import os

from kstream.atomic import own_descriptor
from kstream.errors import UsageError

#: The input paths that name a descriptor the process already has.
_STDIN_PATHS = {"-": 0, "/dev/stdin": 0}


def _inputs(args: argparse.Namespace) -> list[str]:
    """The run's inputs: IN for one input, the FILEs in many-files mode."""
    one = vars(args).get("input")
    return [one] if one is not None else list(getattr(args, "paths", []))


def _input_fd(path: str) -> int | None:
    if path in _STDIN_PATHS:
        return _STDIN_PATHS[path]
    return own_descriptor(path)


def _same_file(fd: int, path: str, path_fd: int | None) -> bool:
    """Whether ``fd`` is the very pipe, FIFO or file the input ``path`` reads: a duplicate
    of stdin (``3<&0``) shares its data, and its offset too."""
    try:
        mine = os.fstat(fd)
        theirs = os.fstat(path_fd) if path_fd is not None else os.stat(path)
    except OSError:
        return False  # the read that follows names what is wrong
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)


def refuse_input_descriptor(fd: int, flag: str, what: str, args: argparse.Namespace) -> None:
    """Refuse ``flag`` (``--key-fd``, ``--passphrase-fd``) when descriptor ``fd`` is also
    the input; ``what`` names the secret read from it."""
    for path in _inputs(args):
        path_fd = _input_fd(path)
        if path_fd == fd or _same_file(fd, path, path_fd):
            name = "stdin" if path_fd == 0 else f"'{path}'"
            raise UsageError(
                f"{flag} {fd} is also the input ({name}): reading the {what} "
                "would take input data with it; give the input as a file, or "
                f"the {what} on another descriptor (e.g. {flag} 3 3<FILE)"
            )
