"""kstream's exceptions: one small, flat hierarchy under :class:`KstreamError`.

Every error a user can cause or meet maps to exactly one of these classes, and each class
carries the process exit code the CLI uses for it, so the CLI never has to guess from
message text. Messages are lowercase, one line, say what to do, and never contain key
material (keys are only ever referred to by size or by file name).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class KstreamError(Exception):
    """Base class of every error kstream raises on purpose.

    ``exit_code`` is what ``kstream`` exits with when this error reaches the CLI.
    """

    exit_code: int = 1


class FormatError(KstreamError):
    """The input is not a (supported) kstream file: bad magic, version, suite, truncation."""

    exit_code = 1


class IntegrityError(KstreamError):
    """Decrypted output disagrees with a check (e.g. ``--verify`` found a mismatch)."""

    exit_code = 1


class InvalidKey(KstreamError):
    """A key is malformed, has a size AES does not accept, or does not fit the file."""

    exit_code = 2


class UsageError(KstreamError):
    """The command line or API call asks for something kstream refuses to do."""

    exit_code = 2


class BackendUnavailable(KstreamError):
    """The requested crypto backend cannot run here; the message says why."""

    exit_code = 3


class IOFailure(KstreamError):
    """Reading the input or writing the output failed (disk full, permission, EIO...)."""

    exit_code = 4


class Interrupted(KstreamError):
    """The run was stopped by a signal (Ctrl-C or SIGTERM); nothing was left half-written."""

    exit_code = 130


@contextlib.contextmanager
def io_errors(action: str, name: str, *, passthrough: tuple[type[OSError], ...] = (),
              error: type[KstreamError] = IOFailure) -> Iterator[None]:
    """Map an ``OSError`` at an I/O edge to ``error``: ``cannot ACTION NAME: why``.

    The OS error stays the cause (``--debug`` shows its errno); ``passthrough`` lists errors
    the caller handles itself (e.g. ``BrokenPipeError`` on a pipe the reader closed). Key
    files map to :class:`InvalidKey` or :class:`UsageError` instead: they decide the exit code.
    """
    try:
        yield
    except passthrough:
        raise
    except OSError as exc:
        raise error(f"cannot {action} {name}: {exc.strerror or exc}") from exc


__all__ = [
    "BackendUnavailable",
    "FormatError",
    "IOFailure",
    "IntegrityError",
    "Interrupted",
    "InvalidKey",
    "KstreamError",
    "UsageError",
    "io_errors",
]
