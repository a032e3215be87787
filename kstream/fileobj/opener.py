"""``kstream.open``: a kstream file as a binary file object, from a path or a file object
and a key, a keyring key's name, a passphrase, or a file holding one of them.

Reading (``"rb"``) reads the header, makes the run's plan (the same
:func:`kstream.engine.plan.planned` as ``kstream decrypt``: key checks, backend, per-file
MAC key) and checks the last segment before returning, so a file that is not intact under
this key fails here, not at some later read. Writing (``"wb"``) makes a fresh header
(random IV; for a passphrase, a fresh salt) and writes it at once.

The plan's key stays usable until the object is closed: then a passphrase's derived key
and a key read here from a key file are wiped. A keyring key never enters the process:
with the kernel backend each segment's cipher is keyed by the key's serial and started at
that segment's counter through its IV.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any, Literal, overload

from kstream.backends.base import Backend, CipherOptions
from kstream.engine.plan import Plan, RunOptions, parse_header, planned
from kstream.errors import UsageError
from kstream.fileobj.body import DEFAULT_CACHE_SEGMENTS, Body
from kstream.fileobj.ends import (
    Input,
    ObjectInput,
    ObjectOutput,
    Output,
    PathInput,
    PathOutput,
    name_of,
)
from kstream.fileobj.reader import DecryptedFile
from kstream.fileobj.writer import EncryptingFile
from kstream.format import (
    DEFAULT_SEGMENT,
    HEADER_SIZE,
    IV_SIZE,
    MAX_SEGMENT,
    MIN_SEGMENT,
    CipherSuite,
    Header,
    header_size,
)
from kstream.keys.key import Key
from kstream.keys.passphrase import (
    PassphraseArg,
    new_params,
    read_passphrase_file,
    wipe,
)
from kstream.keys.unlock import Secret, make_secret
from kstream.memory import tune_malloc
from kstream.notices import log_notice

Notify = Callable[[str], None]
StrPath = str | os.PathLike[str]
#: A path, or a binary file object: seekable and readable to read, writable to write.
FileArg = StrPath | Any
Mode = Literal["rb", "wb"]


def _secret(
    *,
    key: Key | None,
    passphrase: PassphraseArg | None,
    key_file: StrPath | None,
    key_name: str | None,
    passphrase_file: StrPath | None,
    work_factor: int | None,
    max_work_factor: int | None,
    stack: contextlib.ExitStack,
) -> Secret:
    """What unlocks the file, from exactly one of the five ways to give it. A key or
    passphrase read here from a file is wiped when ``stack`` closes."""
    given = [
        name
        for name, value in (
            ("key", key),
            ("passphrase", passphrase),
            ("key_file", key_file),
            ("key_name", key_name),
            ("passphrase_file", passphrase_file),
        )
        if value is not None
    ]
    if len(given) != 1:
        raise UsageError(
            "give exactly one of key=, passphrase=, key_file=, key_name= and passphrase_file="
            + (f" (got {', '.join(given)})" if given else "")
        )
    if key_file is not None:
        key = Key.from_file(key_file)
        stack.callback(key.wipe)
    elif key_name is not None:
        key = Key.from_keyring(key_name)
    elif passphrase_file is not None:
        phrase = read_passphrase_file(passphrase_file)
        stack.callback(wipe, phrase)
        passphrase = phrase
    return make_secret(key, passphrase, work_factor, max_work_factor)


def _plan(
    stack: contextlib.ExitStack,
    encrypt: bool,
    secret: Secret,
    header: Header,
    backend: str | Backend,
    options: CipherOptions | None,
    notify: Notify | None,
) -> Plan:
    """The run's plan, its key usable until ``stack`` closes."""
    run = RunOptions(notify=notify or log_notice, backend=backend, options=options)
    return stack.enter_context(planned(encrypt, secret, run, raw_iv=None, header=header))


def read_header(source: Input) -> Header:
    """The whole header at the start of ``source``: 32 bytes, or 52 with a passphrase."""
    data = source.pread(0, HEADER_SIZE)
    if (size := header_size(data)) > len(data) == HEADER_SIZE:
        data += source.pread(HEADER_SIZE, size - HEADER_SIZE)
    return parse_header(data)


def _new_header(secret: Secret, segment_size: int) -> Header:
    if not (MIN_SEGMENT <= segment_size <= MAX_SEGMENT and segment_size % 16 == 0):
        raise UsageError(
            f"segment_size must be a multiple of 16 between {MIN_SEGMENT} and "
            f"{MAX_SEGMENT}, not {segment_size}"
        )
    iv = os.urandom(IV_SIZE)
    if secret.key is not None:
        return Header(suite=secret.key.suite, iv=iv, auth_param=segment_size)
    params = new_params(secret.work_factor)
    return Header(suite=CipherSuite.AES_256_CTR, iv=iv, auth_param=segment_size, kdf=params)


@overload
def open_file(
    file: FileArg,
    mode: Literal["rb"] = ...,
    *,
    key: Key | None = ...,
    passphrase: PassphraseArg | None = ...,
    key_file: StrPath | None = ...,
    key_name: str | None = ...,
    passphrase_file: StrPath | None = ...,
    backend: str | Backend = ...,
    options: CipherOptions | None = ...,
    cache_segments: int = ...,
    read_ahead: bool = ...,
    segment_size: int = ...,
    work_factor: int | None = ...,
    max_work_factor: int | None = ...,
    force: bool = ...,
    close_file: bool = ...,
    notify: Notify | None = ...,
) -> DecryptedFile: ...


@overload
def open_file(
    file: FileArg,
    mode: Literal["wb"],
    *,
    key: Key | None = ...,
    passphrase: PassphraseArg | None = ...,
    key_file: StrPath | None = ...,
    key_name: str | None = ...,
    passphrase_file: StrPath | None = ...,
    backend: str | Backend = ...,
    options: CipherOptions | None = ...,
    cache_segments: int = ...,
    read_ahead: bool = ...,
    segment_size: int = ...,
    work_factor: int | None = ...,
    max_work_factor: int | None = ...,
    force: bool = ...,
    close_file: bool = ...,
    notify: Notify | None = ...,
) -> EncryptingFile: ...


def open_file(
    file: FileArg,
    mode: Mode = "rb",
    *,
    key: Key | None = None,
    passphrase: PassphraseArg | None = None,
    key_file: StrPath | None = None,
    key_name: str | None = None,
    passphrase_file: StrPath | None = None,
    backend: str | Backend = "auto",
    options: CipherOptions | None = None,
    cache_segments: int = DEFAULT_CACHE_SEGMENTS,
    read_ahead: bool = True,
    segment_size: int = DEFAULT_SEGMENT,
    work_factor: int | None = None,
    max_work_factor: int | None = None,
    force: bool = False,
    close_file: bool = False,
    notify: Notify | None = None,
) -> DecryptedFile | EncryptingFile:
    """Open the kstream file ``file`` (a path or a binary file object) as a file object.

    ``mode="rb"``: a seekable reader of the plaintext (:class:`DecryptedFile`); the file
    must be seekable, and is refused here unless its last segment verifies (so its size,
    key and header are right). The checked ciphertext of at most ``cache_segments``
    segments is kept; ``read_ahead`` reads a sequential reader's next segments in a
    background thread while it works on this one (off: only the segments that reads touch
    are read).
    ``mode="wb"``: a writer that encrypts (:class:`EncryptingFile`) into segments of
    ``segment_size`` bytes; a path is written atomically (refused if it exists, unless
    ``force``), appearing complete on ``close()``.

    Unlock with exactly one of ``key`` (a :class:`kstream.Key`), ``passphrase`` (bytes or
    str), ``key_file`` (a key file's path), ``key_name`` (``kstream:NAME`` in the kernel
    keyring) or ``passphrase_file`` (its first line). ``work_factor`` (writing) and
    ``max_work_factor`` (reading) are scrypt's log2 N, as for ``encrypt_file`` and
    ``decrypt_file``; ``backend`` a name or a backend object already resolved.
    ``close_file``: a file object given is closed with the returned one (and, for a writer
    that fails, discarded where it can be: see :class:`~kstream.fileobj.ends.ObjectOutput`).
    """
    if mode not in ("rb", "wb"):
        raise UsageError(
            f"mode must be 'rb' or 'wb', not {mode!r}; for text, wrap the file object "
            "in io.TextIOWrapper"
        )
    if cache_segments < 1:
        raise UsageError(f"cache_segments must be at least 1, not {cache_segments}")
    # Each segment read or decrypted is a fresh ~1 MiB buffer: kept in the heap rather than
    # mapped and unmapped each time, it costs no page faults (see kstream.memory).
    tune_malloc()
    stack = contextlib.ExitStack()
    owned = close_file and not isinstance(file, str | os.PathLike)
    if owned and mode == "rb":
        stack.callback(getattr(file, "close"))  # noqa: B009 (a path has none: mypy knows)
    try:
        secret = _secret(
            key=key,
            passphrase=passphrase,
            key_file=key_file,
            key_name=key_name,
            passphrase_file=passphrase_file,
            work_factor=work_factor,
            max_work_factor=max_work_factor,
            stack=stack,
        )
        if mode == "rb":
            return _open_reader(
                file, secret, stack, backend, options, notify, cache_segments, read_ahead
            )
        output: Output = (
            PathOutput(file, force=force)
            if isinstance(file, str | os.PathLike)
            else ObjectOutput(file, owned=owned)
        )
    except BaseException:
        stack.close()
        if owned and mode == "wb":
            ObjectOutput(file, owned=True).abort()
        raise
    return _open_writer(
        output, name_of(file), secret, stack, backend, options, notify, segment_size
    )


def _open_reader(
    file: FileArg,
    secret: Secret,
    stack: contextlib.ExitStack,
    backend: str | Backend,
    options: CipherOptions | None,
    notify: Notify | None,
    cache_segments: int,
    read_ahead: bool,
) -> DecryptedFile:
    source: Input = PathInput(file) if isinstance(file, str | os.PathLike) else ObjectInput(file)
    stack.callback(source.close)
    header = read_header(source)
    plan = _plan(stack, False, secret, header, backend, options, notify)
    body = Body(source, header, plan.segment_check(), plan.cipher_at, cache_segments, read_ahead)
    body.check_end()
    return DecryptedFile(body, name_of(file), stack.close)


def _open_writer(
    output: Output,
    name: str,
    secret: Secret,
    stack: contextlib.ExitStack,
    backend: str | Backend,
    options: CipherOptions | None,
    notify: Notify | None,
    segment_size: int,
) -> EncryptingFile:
    try:
        header = _new_header(secret, segment_size)
        plan = _plan(stack, True, secret, header, backend, options, notify)
        codec = plan.codec(0)
    except BaseException:
        output.abort()
        stack.close()
        raise
    # From here the writer finishes or aborts the output, and closes the stack (the key).
    return EncryptingFile(output, name, header.encode(), codec, stack.close)


#: ``kstream.open``: the name users call, like the built-in it mirrors.
open = open_file
