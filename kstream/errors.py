"""kstream's exceptions: one small, flat hierarchy under :class:`KstreamError`.

Every error a user can cause or meet maps to exactly one of these classes, and each class
carries the process exit code the CLI uses for it, so the CLI never has to guess from
message text. Messages are lowercase, one line, say what to do, and never contain key
material (keys are only ever referred to by size or by file name).

A message that tells the reader what to pass names the option through :func:`option`, so
that a library caller reads the keyword argument (``force=True``) and a command-line user
the flag (``--force``): the same error reaches both, and a hint in the other's words is a
wrong hint. The command line selects its words with :func:`command_line_words`.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

#: The options messages name: for each, how the API spells it and how the command line does.
#: Entries that end in ``=`` or a space are followed by a value in the message.
OPTIONS: dict[str, tuple[str, str]] = {
    "force": ("force=True", "--force"),
    "raw": ("raw=True", "--raw"),
    "iv": ("iv= (16 bytes)", "--iv HEX (32 hex digits)"),
    "iv given": ("iv=", "--iv"),
    "verify": ("verify=True", "--verify"),
    "key": ("key= (a kstream.Key)", "-k/--key-file, --key-fd, --key-name or --key-serial"),
    "passphrase": (
        "passphrase= (bytes or str)",
        "-p/--passphrase (asks on the terminal), --passphrase-fd N or --passphrase-file PATH",
    ),
    "max_work_factor": ("max_work_factor=", "--max-work-factor "),
    "work_factor": ("work_factor", "--work-factor"),
    "openssl": ('backend="openssl"', "--backend openssl"),
    "kernel": ('backend="kernel"', "--backend kernel"),
    "driver": ("options=CipherOptions(driver=...)", "--driver"),
    "driver=": ("driver=", "--driver "),
}
#: Marks an option's name inside a message; a path or an OS error cannot contain NUL.
_MARK = "\x00"
_command_line = contextvars.ContextVar("kstream_command_line_words", default=False)


def option(name: str) -> str:
    """A placeholder for option ``name`` (a key of :data:`OPTIONS`) in a message; it reads
    as the API's keyword or the command line's flag when the message is shown."""
    if name not in OPTIONS:
        raise KeyError(f"unknown option {name!r}")
    return f"{_MARK}{name}{_MARK}"


def worded(text: str) -> str:
    """``text`` with every :func:`option` placeholder in the caller's words."""
    if _MARK not in text:
        return text
    which = 1 if _command_line.get() else 0
    parts = text.split(_MARK)
    parts[1::2] = [OPTIONS[name][which] for name in parts[1::2]]
    return "".join(parts)


@contextlib.contextmanager
def command_line_words() -> Iterator[None]:
    """While this block runs (in this thread and the tasks it starts), messages name
    options as the command line spells them."""
    token = _command_line.set(True)
    try:
        yield
    finally:
        _command_line.reset(token)


class KstreamError(Exception):
    """Base class of every error kstream raises on purpose.

    ``exit_code`` is what ``kstream`` exits with when this error reaches the CLI. The message
    may name options with :func:`option`; ``str()`` shows them in the caller's words.
    """

    exit_code: int = 1

    def __str__(self) -> str:
        return worded(super().__str__())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def add_detail(self, detail: str) -> None:
        """Append ``detail`` to the message, e.g. what a failed run left behind, which only
        the caller knows where the error was raised."""
        first = self.args[0] if self.args else ""
        self.args = (f"{first}; {detail}", *self.args[1:])


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


class BackendFailure(KstreamError):
    """The crypto library failed in a way kstream does not expect (the library's own
    exception is the cause): a bug in kstream or in the library, not in the data, so the
    command line's internal-error status (``EX_SOFTWARE``), not a backend's absence."""

    exit_code = 70


class IOFailure(KstreamError):
    """Reading the input or writing the output failed (disk full, permission, EIO...)."""

    exit_code = 4


class Interrupted(KstreamError):
    """The run was stopped by a signal (Ctrl-C or SIGTERM); nothing was left half-written."""

    exit_code = 130


@contextlib.contextmanager
def library_errors(name: str) -> Iterator[None]:
    """Map an unexpected exception from the crypto library behind backend ``name`` to
    :class:`BackendFailure`, so that a library caller only ever catches KstreamError for
    kstream's failures (``except KstreamError`` stays complete)."""
    try:
        yield
    except KstreamError:
        raise
    except Exception as exc:
        raise BackendFailure(
            f"the {name} cipher failed unexpectedly ({type(exc).__name__}: "
            f"{exc}); please report this"
        ) from exc


@contextlib.contextmanager
def io_errors(
    action: str,
    name: str,
    *,
    passthrough: tuple[type[OSError], ...] = (),
    error: type[KstreamError] = IOFailure,
) -> Iterator[None]:
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
    "BackendFailure",
    "BackendUnavailable",
    "FormatError",
    "IOFailure",
    "IntegrityError",
    "Interrupted",
    "InvalidKey",
    "KstreamError",
    "UsageError",
    "command_line_words",
    "io_errors",
    "library_errors",
    "option",
    "worded",
]
