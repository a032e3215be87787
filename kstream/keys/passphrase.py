"""Passphrases: turning one into a file's AES-256 key with scrypt (RFC 7914).

A passphrase file's header carries :class:`~kstream.format.KdfParams` (scrypt's log2 N, r,
p and a 16-byte random salt); :func:`derive` turns passphrase and parameters into a
:class:`~kstream.keys.Key` that is then used exactly as a key file's key would be. Keeping
derivation a pure function of ``(passphrase, params)`` is deliberate: a run over many files
can derive once and share one salt, and a reader can cache keys by ``params`` (equal
parameters, salt included, give equal keys).

scrypt needs 128 * r * N bytes (256 MiB at the default log2 N = 18), allocated by OpenSSL
for the one call and freed when it returns, before any data streams: the one exception to
kstream's streaming memory bound. Because the work factor is read from the file, a reader
caps it (:func:`check_work_factor`): a crafted header must not make decryption use
gigabytes or minutes.

Passphrase bytes are kept in ``bytearray``s that are overwritten after use; Python and
OpenSSL may still hold copies (a ``str`` passphrase, the bytes scrypt returns), so wiping
is best effort.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

from kstream.errors import FormatError, UsageError, io_errors, option
from kstream.format import SALT_SIZE, KdfParams
from kstream.keys.key import Key

#: age's choice: 256 MiB and a second or two (measured in docs/passphrases.md).
DEFAULT_WORK_FACTOR = 18
#: The highest work factor a reader accepts unless told otherwise (1 GiB of memory).
MAX_WORK_FACTOR = 20
#: The lowest work factor kstream writes; lower ones only cost an attacker less.
MIN_WORK_FACTOR = 10
#: The highest kstream writes: 2^30 * 1 KiB = 1 TiB of memory is beyond any machine here.
MAX_WRITE_WORK_FACTOR = 30
KEY_SIZE = 32

#: What the API takes: the passphrase, or a function that returns it when it is needed (the
#: command line's prompt, asked only once the header says the file needs a passphrase).
PassphraseArg = bytes | bytearray | str | Callable[[], "bytes | bytearray | str"]


def new_params(work_factor: int = DEFAULT_WORK_FACTOR) -> KdfParams:
    """Parameters for a new file: scrypt with ``work_factor`` = log2 N, r = 8, p = 1 and 16
    fresh random salt bytes from the OS CSPRNG."""
    if not MIN_WORK_FACTOR <= work_factor <= MAX_WRITE_WORK_FACTOR:
        raise UsageError(
            f"the work factor must be between {MIN_WORK_FACTOR} and "
            f"{MAX_WRITE_WORK_FACTOR} (log2 of scrypt's N), not {work_factor}"
        )
    return KdfParams(log2n=work_factor, salt=os.urandom(SALT_SIZE))


def check_work_factor(params: KdfParams, limit: int = MAX_WORK_FACTOR) -> None:
    """Refuse to derive when the file asks for more work than ``limit`` allows."""
    if params.log2n > limit:
        raise FormatError(
            f"the file's passphrase work factor is {params.log2n} (scrypt needs "
            f"{_size(params.memory)} of memory), above the limit of {limit}; if you trust "
            f"the file, allow it with {option('max_work_factor')}{params.log2n}"
        )


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} {unit}"
        n //= 1024
    raise AssertionError  # pragma: no cover


def passphrase_bytes(value: PassphraseArg) -> bytearray:
    """The passphrase as a new ``bytearray`` (a ``str`` as UTF-8, not normalised), asking
    for it first if ``value`` is a function. An empty passphrase is refused."""
    if callable(value):
        value = value()
    if isinstance(value, str):
        out = bytearray(value.encode("utf-8"))
    elif isinstance(value, bytes | bytearray):
        out = bytearray(value)
    else:
        raise UsageError("a passphrase must be bytes or str")
    if not out:
        raise UsageError("the passphrase is empty; refusing to encrypt or decrypt with it")
    return out


def wipe(buf: bytearray) -> None:
    """Overwrite ``buf`` (best effort: Python may have copied it before)."""
    for i in range(len(buf)):
        buf[i] = 0


#: From this log2 N on a derivation takes about a second or more.
SLOW_LOG2N = 18
#: Set by the command line on a terminal: a context manager that shows what takes so long
#: while it runs (a status line), so that a slow derivation does not look like a hang.
SLOW_WORK: Callable[[str], AbstractContextManager[None]] | None = None


def derive(passphrase: bytes | bytearray, params: KdfParams, *, encrypting: bool = False) -> Key:
    """The AES-256 key for ``passphrase`` under ``params`` (scrypt, RFC 7914).

    Call :meth:`Key.wipe` on the result when done. scrypt's memory is freed when this
    returns. Memory scrypt cannot get is a usage error: the work factor was the caller's
    choice (``encrypting``: the advice is to lower it) or the file's.
    """
    # Imported here: the command line imports this module to build its parser.
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    kdf = Scrypt(salt=params.salt, length=KEY_SIZE, n=1 << params.log2n, r=params.r, p=params.p)
    shown = (
        SLOW_WORK(f"deriving the key from the passphrase (scrypt, {_size(params.memory)})")
        if SLOW_WORK is not None and params.log2n >= SLOW_LOG2N
        else nullcontext()
    )
    try:
        with shown:
            return Key(kdf.derive(passphrase))  # a bytearray is read in place, not copied
    except MemoryError as exc:  # OpenSSL could not allocate 128 * r * N bytes
        advice = (
            f"use a lower {option('work_factor')} (the default, {DEFAULT_WORK_FACTOR}, "
            f"needs {_size(128 * 8 << DEFAULT_WORK_FACTOR)})"
            if encrypting
            else "the file can only be decrypted where that much memory is free"
        )
        raise UsageError(
            f"scrypt cannot get the {_size(params.memory)} of memory that "
            f"work factor {params.log2n} needs (128 * r * N bytes, "
            f"r = {params.r}); {advice}"
        ) from exc


class Derivations:
    """One passphrase for a run over many files: obtained once, derived once per set of
    parameters.

    scrypt is meant to be slow (about a second at the default), so it must not run once per
    file: files encrypted in one run share one salt and so one derivation (each file keeps
    its own random IV, so no keystream repeats), and decryption keeps the keys it derived by
    their parameters, salt included. Pass an instance as ``passphrase=``; call :meth:`wipe`
    when the run ends (the keys are not wiped per file).
    """

    def __init__(self, passphrase: PassphraseArg, work_factor: int = DEFAULT_WORK_FACTOR) -> None:
        self._source: PassphraseArg | None = passphrase
        self._phrase: bytearray | None = None
        self._work_factor = work_factor
        self._params: KdfParams | None = None
        self._keys: dict[KdfParams, Key] = {}

    def __repr__(self) -> str:  # never the passphrase
        return f"<kstream Derivations: {len(self._keys)} keys>"

    def encryption_params(self) -> KdfParams:
        """The parameters (one salt) for every file this run encrypts."""
        if self._params is None:
            self._params = new_params(self._work_factor)
        return self._params

    def key_for(self, params: KdfParams) -> Key:
        """The key for ``params``, derived on first use (the passphrase is asked or read
        then, once)."""
        key = self._keys.get(params)
        if key is None:
            if self._phrase is None:
                if self._source is None:
                    raise ValueError("these derivations were wiped")
                self._phrase = passphrase_bytes(self._source)
                self._source = None
            key = self._keys[params] = derive(
                self._phrase, params, encrypting=params == self._params
            )
        return key

    def wipe(self) -> None:
        if self._phrase is not None:
            wipe(self._phrase)
        for key in self._keys.values():
            key.wipe()
        self._keys.clear()
        self._source = None


_MAX_LINE = 64 << 10  # a passphrase line; refuse to slurp a large file by mistake


def _first_line(content: bytes, where: str) -> bytearray:
    line = bytearray(content.split(b"\n", 1)[0])
    if line.endswith(b"\r"):
        del line[-1:]
    if len(line) > _MAX_LINE:
        raise UsageError(
            f"{where} does not start with a passphrase line "
            f"(the first line is over {_MAX_LINE} bytes)"
        )
    if not line:
        raise UsageError(f"{where} gives an empty passphrase (its first line is empty)")
    return line


def read_passphrase_file(path: str | os.PathLike[str]) -> bytearray:
    """The first line of the file at ``path``, without its newline (``\\n`` or ``\\r\\n``)."""
    where = f"passphrase file '{os.fspath(path)}'"
    with io_errors("read", where, error=UsageError), open(path, "rb") as f:
        content = f.read(_MAX_LINE + 2)
    return _first_line(content, where)


def read_passphrase_fd(fd: int) -> bytearray:
    """The first line read from inherited file descriptor ``fd`` (up to the newline or end
    of input: a writer may keep the descriptor open after the line)."""
    where = f"passphrase fd {fd}"
    content = bytearray()
    with io_errors("read", where, error=UsageError):
        while b"\n" not in content and len(content) <= _MAX_LINE + 1:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            content += chunk
    try:
        return _first_line(bytes(content), where)
    finally:
        wipe(content)


__all__ = [
    "DEFAULT_WORK_FACTOR",
    "MAX_WORK_FACTOR",
    "MIN_WORK_FACTOR",
    "PassphraseArg",
    "check_work_factor",
    "derive",
    "new_params",
    "passphrase_bytes",
    "read_passphrase_fd",
    "read_passphrase_file",
    "wipe",
]
