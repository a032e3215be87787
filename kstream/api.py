"""The coroutine API: encrypt and decrypt files, file descriptors and async byte streams.

Everything here is a thin composition of the other modules: ``format`` for the header,
``backends`` for the cipher, ``pipeline`` for the streaming, ``atomic`` for safe output.
The CLI is built on the same functions, so the library and the tool cannot disagree.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from typing import Any, Literal, cast

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kstream.atomic import AtomicFile, check_output_path
from kstream.auth import SegmentOpener, mac_for_key, sealer
from kstream.backends import Backend, CipherOptions, CipherStream, get_backend, select_backend
from kstream.backends.kernel import KernelBackend, KernelEcbCtrStream
from kstream.backends.openssl import OpenSSLBackend
from kstream.errors import BackendUnavailable, FormatError, InvalidKey, IOFailure, UsageError
from kstream.format import DEFAULT_SEGMENT, HEADER_SIZE, IV_SIZE, Header
from kstream.inplace import encrypt_pieces, parts_transform, pump_fds_or_streams
from kstream.keys import Key
from kstream.memory import tune_malloc
from kstream.parallel import (
    LayoutMismatch,
    decrypt_file_parallel,
    encrypt_file_parallel,
    parallel_decrypt_layout,
)
from kstream.pipeline import (
    AsyncFileSource,
    FdSink,
    FdSource,
    IterSource,
    Progress,
    Sink,
    Source,
    cipher_batches,
    read_exact,
    run_blocking,
)
from kstream.verify import VerifyingStream

log = logging.getLogger("kstream")

BackendName = Literal["auto", "kernel", "openssl"]
Notify = Callable[[str], None]
#: A path, an open file descriptor (the CLI's ``-``), or an async binary file object.
FileArg = str | os.PathLike[str] | int | Any


NOTHING_TO_VERIFY = "--verify has nothing to check: openssl is the reference"


def _log_notice(message: str) -> None:
    log.info("%s", message)


def _check_key(key: object) -> Key:
    """Every operation starts here: check the key, and tune malloc once (kstream.memory)."""
    if not isinstance(key, Key):
        raise UsageError("key must be a kstream.Key (use Key.from_file or Key.generate)")
    tune_malloc()
    return key


def _openssl_reads_warning(key: Key) -> str:
    ref = key.keyring_ref
    label = ref.label if ref is not None else "the key"
    return (f"warning: --backend openssl reads {label} out of the kernel keyring: the key's "
            "bytes now enter this process's memory")


def choose_backend(key: Key, backend: str, notify: Notify) -> Backend:
    """The backend for ``key``: the user's choice, except that a keyring key needs the kernel.

    A ``logon`` key cannot leave the kernel, so only the kernel backend can use it, and
    ``auto`` does not fall back. A ``user`` key could be read out; that happens only when the
    caller names ``openssl`` explicitly, with a warning through ``notify``.
    """
    ref = key.keyring_ref
    if ref is None:
        return select_backend(backend, notify)
    if backend == "openssl":
        if ref.type != "user":
            raise UsageError(
                f"{ref.label} cannot be used with --backend openssl: a {ref.type} key never "
                "leaves the kernel, so only the kernel backend can use it (Linux ≥ 6.2)"
            )
        notify(_openssl_reads_warning(key))
        return OpenSSLBackend()
    if backend not in ("auto", "kernel"):
        get_backend(backend)  # raises the usual message for an unknown backend name
    kernel = KernelBackend()
    status = kernel.probe()
    if not status.available:
        if ref.type == "user":
            why = "; --backend openssl can read this user key into process memory instead"
        else:
            why = ""
        raise BackendUnavailable(
            f"{ref.label} can only be used through the kernel crypto API, which is not "
            f"available here: {status.reason}{why}"
        )
    return kernel


@contextlib.contextmanager
def _usable_key(key: object, backend: str, notify: Notify | None) -> Iterator[Key]:
    """``key`` as the run will use it; a temporary copy is wiped when the run ends.

    A ``user`` keyring key with an explicit ``backend="openssl"`` is read once here (with
    the warning), so the cipher and the MAC derivation use the same bytes and nothing asks
    the kernel for the key twice. Every other key is used as it is.
    """
    key = _check_key(key)
    ref = key.keyring_ref
    if ref is None or backend != "openssl":
        yield key
        return
    if ref.type != "user":
        choose_backend(key, backend, notify or _log_notice)  # raises the explanation
    (notify or _log_notice)(_openssl_reads_warning(key))
    copy = Key(key.material())
    try:
        yield copy
    finally:
        copy.wipe()


def _check_iv(iv: bytes | None, raw: bool) -> bytes | None:
    if raw:
        if iv is None:
            raise UsageError("raw mode has no header to carry the IV: give --iv (32 hex digits)")
        if len(iv) != IV_SIZE:
            raise UsageError(f"the IV must be {IV_SIZE} bytes (32 hex digits), got {len(iv)}")
        return bytes(iv)
    if iv is not None:
        raise UsageError(
            "an IV can only be given with raw mode; kstream files get a fresh random IV"
        )
    return None


def open_cipher(
    key: Key,
    iv: bytes,
    *,
    backend: str = "auto",
    options: CipherOptions | None = None,
    verify: bool = False,
    notify: Notify | None = None,
) -> CipherStream:
    """Select the backend and open a cipher stream, wrapped for ``verify`` if asked.

    With a keyring key the ``verify`` reference cannot be OpenSSL (the key is not in this
    process): it is CTR built by kstream from the kernel's ``ecb(aes)`` under the same
    keyring key (:class:`~kstream.backends.kernel.ecb_ctr.KernelEcbCtrStream`).
    """
    chosen = choose_backend(key, backend, notify or _log_notice)
    stream = chosen.open(key, iv, options)
    if verify:
        if chosen.name == "openssl":
            (notify or _log_notice)(NOTHING_TO_VERIFY)
            return stream
        try:
            ref = key.keyring_ref
            reference: CipherStream = (
                KernelEcbCtrStream(ref, iv) if ref is not None else OpenSSLBackend().open(key, iv)
            )
        except BaseException:
            stream.close()
            raise
        return VerifyingStream(stream, reference)
    return stream


def _with_mac(cipher: CipherStream, key: Key, header: Header) -> AESGCM:
    """The per-file MAC for ``header``; closes ``cipher`` if deriving it fails."""
    try:
        return mac_for_key(key, header)
    except BaseException:
        cipher.close()
        raise


def _encryptor(
    key: Key, raw_iv: bytes | None, header_iv: bytes | None = None, **cipher_kw: Any
) -> tuple[CipherStream, bytes]:
    """The stream that encrypts, and the bytes that precede its output (the header or none).

    Outside raw mode the IV is 16 fresh bytes from the OS CSPRNG for every file (never
    reused, never derived from the key) and the output is sealed in authenticated segments.
    ``header_iv`` exists only to reproduce published test vectors.
    """
    if raw_iv is not None:
        return open_cipher(key, raw_iv, **cipher_kw), b""
    header = Header(suite=key.suite, iv=header_iv or os.urandom(IV_SIZE))
    # The cipher first: with a keyring key its errors (kernel too old, no permission) are
    # the ones to report, and the MAC derivation would meet the same ones.
    cipher = open_cipher(key, header.iv, **cipher_kw)
    mac = _with_mac(cipher, key, header)
    return sealer(cipher, mac, header.auth_param), header.encode()


async def _decryptor(
    source: Source, key: Key, raw_iv: bytes | None, **cipher_kw: Any
) -> CipherStream:
    """The stream that decrypts what follows in ``source`` (reading the header first)."""
    if raw_iv is not None:
        return open_cipher(key, raw_iv, **cipher_kw)
    header = await read_header(source, key)
    cipher = open_cipher(key, header.iv, **cipher_kw)
    return SegmentOpener(cipher, _with_mac(cipher, key, header), header.auth_param)


async def encrypt_to(
    source: Source,
    sink: Sink,
    *,
    key: Key,
    raw: bool = False,
    iv: bytes | None = None,
    progress: Progress | None = None,
    header_iv: bytes | None = None,
    **cipher_kw: Any,
) -> None:
    """Encrypt everything from ``source`` into ``sink`` (header first unless ``raw``).

    ``cipher_kw`` are :func:`open_cipher`'s keywords (backend, options, verify, notify).
    """
    with _usable_key(key, cipher_kw.get("backend", "auto"), cipher_kw.get("notify")) as key:
        stream, prefix = _encryptor(key, _check_iv(iv, raw), header_iv, **cipher_kw)
        try:
            if prefix:
                await sink.write(prefix)
            await pump_fds_or_streams(source, stream, sink, progress)
        finally:
            stream.close()


async def read_header(source: Source, key: Key) -> Header:
    """Read and check the header at the start of ``source`` against ``key``."""
    return check_header(await read_exact(source, HEADER_SIZE), key)


def check_header(data: bytes, key: Key) -> Header:
    """Parse the first bytes of a file and check that ``key`` fits its cipher suite."""
    if not data:
        raise FormatError("input is empty: not a kstream file")
    header = Header.parse(data)
    if header.suite.key_size != key.size:
        raise InvalidKey(
            f"the key is AES-{key.bits} ({key.size} bytes) but the file was encrypted with "
            f"{header.suite.label}; use the key the file was encrypted with"
        )
    return header


async def decrypt_to(
    source: Source,
    sink: Sink,
    *,
    key: Key,
    raw: bool = False,
    iv: bytes | None = None,
    progress: Progress | None = None,
    **cipher_kw: Any,
) -> None:
    """Decrypt everything from ``source`` into ``sink``, checking every segment's tag."""
    with _usable_key(key, cipher_kw.get("backend", "auto"), cipher_kw.get("notify")) as key:
        stream = await _decryptor(source, key, _check_iv(iv, raw), **cipher_kw)
        try:
            await pump_fds_or_streams(source, stream, sink, progress)
        finally:
            stream.close()


def _name_of(arg: FileArg) -> str:
    if isinstance(arg, int):
        return {0: "stdin", 1: "stdout"}.get(arg, f"fd {arg}")
    if isinstance(arg, str | os.PathLike):
        return f"'{os.fspath(arg)}'"
    return repr(arg)


async def open_source(src: FileArg) -> tuple[Source, int | None]:
    """A Source for ``src`` and the fd kstream opened for it (to close), if any."""
    if isinstance(src, int):
        return FdSource(src, _name_of(src)), None
    if isinstance(src, str | os.PathLike):
        path = os.fspath(src)
        try:
            fd = await run_blocking(os.open, path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise IOFailure(f"cannot open input '{path}': {exc.strerror or exc}") from None
        return FdSource(fd, f"input '{path}'"), fd
    if hasattr(src, "read"):
        return AsyncFileSource(src), None
    raise UsageError(f"cannot read from {type(src).__name__}: give a path or an async file")


Direction = Literal["encrypt", "decrypt"]


async def process_file(
    direction: Direction,
    src: FileArg,
    dst: FileArg,
    *,
    key: Key,
    force: bool = False,
    jobs: int | None = None,
    **kwargs: Any,
) -> None:
    """Encrypt or decrypt ``src`` into ``dst`` with atomic output when ``dst`` is a path.

    A regular input file into a path is processed by ``jobs`` parallel ranges (default: the
    CPU count); everything else streams through the sequential pipeline.
    """
    run = encrypt_to if direction == "encrypt" else decrypt_to
    dst_path = os.fspath(dst) if isinstance(dst, str | os.PathLike) else None
    if dst_path is not None:
        src_path = os.fspath(src) if isinstance(src, str | os.PathLike) else None
        check_output_path(dst_path, force=force, src=src_path)
    with _usable_key(key, kwargs.get("backend", "auto"), kwargs.get("notify")) as key:
        await _process_with_key(run, direction, src, dst, dst_path, key=key, force=force,
                                jobs=jobs, **kwargs)


async def _process_with_key(
    run: Callable[..., Any], direction: Direction, src: FileArg, dst: FileArg,
    dst_path: str | None, *, key: Key, force: bool, jobs: int | None, **kwargs: Any,
) -> None:
    source, owned_fd = await open_source(src)
    try:
        if dst_path is None:
            if isinstance(dst, int):
                sink: Sink = FdSink(dst, _name_of(dst))
            elif hasattr(dst, "write"):
                sink = cast(Sink, dst)
            else:
                raise UsageError(f"cannot write to {type(dst).__name__}: give a path or a file")
            await run(source, sink, key=key, **kwargs)
            return
        out = AtomicFile(dst_path, force=force)
        try:
            sink_name = f"output '{dst_path}'"
            if not await _run_parallel(direction, source, out.fd, sink_name, key, jobs,
                                       **kwargs):
                await run(source, FdSink(out.fd, sink_name), key=key, **kwargs)
            await run_blocking(out.commit)
        except BaseException:
            out.abort()
            raise
    finally:
        if owned_fd is not None:
            os.close(owned_fd)


async def _run_parallel(
    direction: Direction,
    source: Source,
    out_fd: int,
    out_name: str,
    key: Key,
    jobs: int | None,
    *,
    backend: str = "auto",
    raw: bool = False,
    iv: bytes | None = None,
    options: CipherOptions | None = None,
    verify: bool = False,
    notify: Notify | None = None,
    progress: Progress | None = None,
) -> bool:
    """Process a regular input file with parallel ranges; False if that does not apply.

    Falls back (returns False) for pipes, for an explicit splice/sendfile transfer, and for
    an authenticated input whose size fits no intact file, so that the sequential path
    reports exactly what is wrong with it.
    """
    if not isinstance(source, FdSource) or not source.is_regular():
        return False
    if options is not None and options.transfer not in ("auto", "sendmsg"):
        return False
    key = _check_key(key)
    raw_iv = _check_iv(iv, raw)
    base = source.position()
    size = (source.size_hint() or 0)
    chosen = choose_backend(key, backend, notify or _log_notice).name
    if verify and chosen == "openssl":
        (notify or _log_notice)(NOTHING_TO_VERIFY)
        verify = False

    def open_stream(counter: bytes) -> CipherStream:
        return open_cipher(key, counter, backend=chosen, options=options, verify=verify,
                           notify=_log_notice)

    count = jobs or os.cpu_count() or 1
    names = (source.name, out_name)
    if direction == "encrypt":
        if raw_iv is not None:
            await encrypt_file_parallel(
                source.fd, out_fd, size, iv=raw_iv, segment=DEFAULT_SEGMENT, jobs=count,
                open_stream=open_stream, mac=None, prefix=b"", names=names,
                progress=progress, src_offset=base)
            return True
        header = Header(suite=key.suite, iv=os.urandom(IV_SIZE))
        await encrypt_file_parallel(
            source.fd, out_fd, size, iv=header.iv, segment=header.auth_param, jobs=count,
            open_stream=open_stream, mac=mac_for_key(key, header),
            prefix=header.encode(), names=names, progress=progress, src_offset=base)
        return True
    if raw_iv is not None:
        await decrypt_file_parallel(
            source.fd, out_fd, size, iv=raw_iv, segment=DEFAULT_SEGMENT, jobs=count,
            open_stream=open_stream, mac=None, names=names, progress=progress,
            src_offset=base)
        return True
    header = check_header(os.pread(source.fd, HEADER_SIZE, base), key)
    if parallel_decrypt_layout(size, header.auth_param) is None:
        return False
    try:
        await decrypt_file_parallel(
            source.fd, out_fd, size, iv=header.iv, segment=header.auth_param, jobs=count,
            open_stream=open_stream, mac=mac_for_key(key, header), names=names,
            progress=progress, src_offset=base)
    except LayoutMismatch:
        os.ftruncate(out_fd, 0)  # nothing was released; let the sequential reader explain
        return False
    return True


async def encrypt_file(
    src: FileArg,
    dst: FileArg,
    *,
    key: Key,
    backend: BackendName = "auto",
    force: bool = False,
    raw: bool = False,
    iv: bytes | None = None,
    verify: bool = False,
    options: CipherOptions | None = None,
    notify: Notify | None = None,
    progress: Progress | None = None,
    jobs: int | None = None,
) -> None:
    """Encrypt ``src`` into ``dst``.

    ``dst`` as a path is written atomically (temp file, fsync, rename) and is refused if it
    exists unless ``force``. ``raw=True`` writes bare AES-CTR starting at ``iv`` with no
    header (for interoperating with ``openssl enc``); otherwise the IV is fresh and random.
    """
    await process_file(
        "encrypt", src, dst, key=key, force=force, backend=backend, raw=raw, iv=iv,
        verify=verify, options=options, notify=notify, progress=progress, jobs=jobs,
    )


async def decrypt_file(
    src: FileArg,
    dst: FileArg,
    *,
    key: Key,
    backend: BackendName = "auto",
    force: bool = False,
    raw: bool = False,
    iv: bytes | None = None,
    verify: bool = False,
    options: CipherOptions | None = None,
    notify: Notify | None = None,
    progress: Progress | None = None,
    jobs: int | None = None,
) -> None:
    """Decrypt ``src`` into ``dst``; same output guarantees as :func:`encrypt_file`."""
    await process_file(
        "decrypt", src, dst, key=key, force=force, backend=backend, raw=raw, iv=iv,
        verify=verify, options=options, notify=notify, progress=progress, jobs=jobs,
    )


async def encrypt_stream(
    source: AsyncIterable[bytes] | Any,
    *,
    key: Key,
    backend: BackendName = "auto",
    raw: bool = False,
    iv: bytes | None = None,
    verify: bool = False,
    options: CipherOptions | None = None,
    notify: Notify | None = None,
) -> AsyncIterator[bytes | bytearray]:
    """Encrypt an async iterable of bytes (or an ``asyncio.StreamReader``) as it arrives.

    Yields the same bytes :func:`encrypt_file` would write, in pieces of about 1 MiB, each
    a new object the caller may keep: ``bytearray`` where OpenSSL encrypts the caller's
    pieces straight into it (saving a copy of every batch), ``bytes`` otherwise.
    """
    with _usable_key(key, backend, notify) as key:
        stream, prefix = _encryptor(key, _check_iv(iv, raw), backend=backend, options=options,
                                    verify=verify, notify=notify)
        try:
            if prefix:
                yield prefix
            src = IterSource(source)
            transform = parts_transform(stream)
            batches = (encrypt_pieces(src, transform) if transform is not None
                       else cipher_batches(src, stream))
            # Closed explicitly, so that its read-ahead has stopped before the cipher closes.
            async with contextlib.aclosing(batches):
                async for out in batches:
                    yield out
        finally:
            stream.close()


async def decrypt_stream(
    source: AsyncIterable[bytes] | Any,
    *,
    key: Key,
    backend: BackendName = "auto",
    raw: bool = False,
    iv: bytes | None = None,
    verify: bool = False,
    options: CipherOptions | None = None,
    notify: Notify | None = None,
) -> AsyncIterator[bytes]:
    """Decrypt an async iterable of bytes (or an ``asyncio.StreamReader``) as it arrives."""
    with _usable_key(key, backend, notify) as key:
        src = IterSource(source)
        stream = await _decryptor(src, key, _check_iv(iv, raw), backend=backend,
                                  options=options, verify=verify, notify=notify)
        try:
            async with contextlib.aclosing(cipher_batches(src, stream)) as batches:
                async for out in batches:
                    yield out
        finally:
            stream.close()
