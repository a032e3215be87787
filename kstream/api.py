"""The coroutine API: encrypt and decrypt files, file descriptors and async byte streams.

Each coroutine is the same few steps: check the key, read or make the header, make the plan
(:mod:`kstream.engine.plan`: backend, codec, driver), run it. The CLI is built on the same
functions, so the library and the tool cannot disagree.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any, Literal, cast

from kstream.atomic import AtomicFile, check_output_path
from kstream.backends.base import CipherOptions
from kstream.engine.fdio import FdSink, FdSource
from kstream.engine.iterate import AsyncFileSource, IterSource, Sink, Source, read_exact
from kstream.engine.plan import (
    Plan,
    check_header,
    check_iv,
    make_plan,
    ranges_apply,
    run,
    run_iterable,
    run_ranges_plan,
    usable_key,
)
from kstream.engine.threads import run_blocking
from kstream.errors import UsageError, io_errors
from kstream.format import HEADER_SIZE, Header
from kstream.keys import Key

log = logging.getLogger("kstream")

BackendName = Literal["auto", "kernel", "openssl"]
Notify = Callable[[str], None]
Progress = Callable[[int], None]
#: A path, an open file descriptor (the CLI's ``-``), or an async binary file object.
FileArg = str | os.PathLike[str] | int | Any
Direction = Literal["encrypt", "decrypt"]


def _log_notice(message: str) -> None:
    log.info("%s", message)


def _usable_key(key: object, backend: str, notify: Notify | None
                ) -> contextlib.AbstractContextManager[Key]:
    return usable_key(key, backend, notify or _log_notice)


async def read_header(source: Source, key: Key) -> Header:
    """Read and check the header at the start of ``source`` against ``key``."""
    return check_header(await read_exact(source, HEADER_SIZE), key)


async def _plan(direction: Direction, source: Source | None, key: Key, *, raw: bool = False,
                iv: bytes | None = None, header: Header | None = None,
                header_iv: bytes | None = None, backend: str = "auto",
                options: CipherOptions | None = None, verify: bool = False,
                notify: Notify | None = None) -> Plan:
    """The plan for one run. To decrypt a kstream file its header is read from ``source``
    unless given; ``header_iv`` exists only to reproduce published test vectors."""
    raw_iv = check_iv(iv, raw)
    if raw_iv is None and header is None:
        if direction == "decrypt":
            assert source is not None
            header = await read_header(source, key)
        elif header_iv is not None:
            header = Header(suite=key.suite, iv=header_iv)
    return make_plan(encrypt=direction == "encrypt", key=key, raw_iv=raw_iv, header=header,
                     backend=backend, options=options, verify=verify,
                     notify=notify or _log_notice)


async def encrypt_to(source: Source, sink: Sink | FdSink, *, key: Key,
                     progress: Progress | None = None, **kw: Any) -> None:
    """Encrypt everything from ``source`` into ``sink`` (header first unless ``raw``).

    ``kw``: raw, iv, header_iv (test vectors only), backend, options, verify, notify.
    """
    with _usable_key(key, kw.get("backend", "auto"), kw.get("notify")) as key:
        await run(await _plan("encrypt", source, key, **kw), source, sink, progress)


async def decrypt_to(source: Source, sink: Sink | FdSink, *, key: Key,
                     progress: Progress | None = None, **kw: Any) -> None:
    """Decrypt everything from ``source`` into ``sink``, checking every segment's tag."""
    with _usable_key(key, kw.get("backend", "auto"), kw.get("notify")) as key:
        await run(await _plan("decrypt", source, key, **kw), source, sink, progress)


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
        with io_errors("open input", f"'{path}'"):
            fd = await run_blocking(os.open, path, os.O_RDONLY | os.O_CLOEXEC)
        return FdSource(fd, f"input '{path}'"), fd
    if hasattr(src, "read"):
        return AsyncFileSource(src), None
    raise UsageError(f"cannot read from {type(src).__name__}: give a path or an async file")


def _sink_for(dst: FileArg) -> Sink | FdSink:
    if isinstance(dst, int):
        return FdSink(dst, _name_of(dst))
    if hasattr(dst, "write"):
        return cast(Sink, dst)
    raise UsageError(f"cannot write to {type(dst).__name__}: give a path or a file")


async def process_file(direction: Direction, src: FileArg, dst: FileArg, *, key: Key,
                       force: bool = False, jobs: int | None = None,
                       progress: Progress | None = None, **kw: Any) -> None:
    """Encrypt or decrypt ``src`` into ``dst`` with atomic output when ``dst`` is a path.

    A regular input file into a path is processed by ``jobs`` parallel ranges (default: the
    CPU count); everything else streams through the fd stream or async-iterable driver.
    """
    dst_path = os.fspath(dst) if isinstance(dst, str | os.PathLike) else None
    if dst_path is not None:
        src_path = os.fspath(src) if isinstance(src, str | os.PathLike) else None
        check_output_path(dst_path, force=force, src=src_path)
    with _usable_key(key, kw.get("backend", "auto"), kw.get("notify")) as key:
        source, owned_fd = await open_source(src)
        try:
            if dst_path is None:
                sink = _sink_for(dst)
                await run(await _plan(direction, source, key, **kw), source, sink, progress)
                return
            out = AtomicFile(dst_path, force=force)
            try:
                await _run_into_file(direction, source, FdSink(out.fd, f"output '{dst_path}'"),
                                     key, jobs, progress, kw)
                await run_blocking(out.commit)
            except BaseException:
                out.abort()
                raise
        finally:
            if owned_fd is not None:
                os.close(owned_fd)


async def _run_into_file(direction: Direction, source: Source, sink: FdSink, key: Key,
                         jobs: int | None, progress: Progress | None, kw: dict[str, Any]
                         ) -> None:
    """Into a new file: by parallel ranges when the input is a regular file (and no explicit
    splice/sendfile asks otherwise), else by the stream driver. One plan either way, also
    when ranges hand a damaged file (its size fits no intact file) to the stream driver,
    which then names exactly what is wrong."""
    if not isinstance(source, FdSource) or not ranges_apply(source, kw.get("options")):
        await run(await _plan(direction, source, key, **kw), source, sink, progress)
        return
    base = source.position()
    size = source.size_hint() or 0
    header = None
    if direction == "decrypt" and check_iv(kw.get("iv"), kw.get("raw", False)) is None:
        with io_errors("read", source.name):
            header = check_header(os.pread(source.fd, HEADER_SIZE, base), key)
    plan = await _plan(direction, None, key, header=header, **kw)
    if await run_ranges_plan(plan, source, sink, size, base, jobs or os.cpu_count() or 1,
                             progress):
        return
    assert header is not None  # only a kstream file's body can fit no intact layout
    os.lseek(source.fd, base + HEADER_SIZE, os.SEEK_SET)  # the header is read already
    await run(plan, source, sink, progress)


async def encrypt_file(
    src: FileArg, dst: FileArg, *, key: Key, backend: BackendName = "auto",
    force: bool = False, raw: bool = False, iv: bytes | None = None, verify: bool = False,
    options: CipherOptions | None = None, notify: Notify | None = None,
    progress: Progress | None = None, jobs: int | None = None,
) -> None:
    """Encrypt ``src`` into ``dst``.

    ``dst`` as a path is written atomically (temp file, fsync, rename) and is refused if it
    exists unless ``force``. ``raw=True`` writes bare AES-CTR starting at ``iv`` with no
    header (for interoperating with ``openssl enc``); otherwise the IV is fresh and random.
    """
    await process_file("encrypt", src, dst, key=key, force=force, backend=backend, raw=raw,
                       iv=iv, verify=verify, options=options, notify=notify,
                       progress=progress, jobs=jobs)


async def decrypt_file(
    src: FileArg, dst: FileArg, *, key: Key, backend: BackendName = "auto",
    force: bool = False, raw: bool = False, iv: bytes | None = None, verify: bool = False,
    options: CipherOptions | None = None, notify: Notify | None = None,
    progress: Progress | None = None, jobs: int | None = None,
) -> None:
    """Decrypt ``src`` into ``dst``; same output guarantees as :func:`encrypt_file`."""
    await process_file("decrypt", src, dst, key=key, force=force, backend=backend, raw=raw,
                       iv=iv, verify=verify, options=options, notify=notify,
                       progress=progress, jobs=jobs)


async def encrypt_stream(
    source: AsyncIterable[bytes] | Any, *, key: Key, backend: BackendName = "auto",
    raw: bool = False, iv: bytes | None = None, verify: bool = False,
    options: CipherOptions | None = None, notify: Notify | None = None,
) -> AsyncIterator[bytes | bytearray]:
    """Encrypt an async iterable of bytes (or an ``asyncio.StreamReader``) as it arrives.

    Yields the same bytes :func:`encrypt_file` would write, in pieces of about 1 MiB, each
    a new object the caller may keep: ``bytearray`` where the cipher encrypts the caller's
    pieces straight into it (saving a copy of every segment), ``bytes`` otherwise.
    """
    with _usable_key(key, backend, notify) as key:
        src = IterSource(source)
        plan = await _plan("encrypt", src, key, raw=raw, iv=iv, backend=backend,
                           options=options, verify=verify, notify=notify)
        async with contextlib.aclosing(run_iterable(plan, src)) as outputs:
            async for out in outputs:
                yield out


async def decrypt_stream(
    source: AsyncIterable[bytes] | Any, *, key: Key, backend: BackendName = "auto",
    raw: bool = False, iv: bytes | None = None, verify: bool = False,
    options: CipherOptions | None = None, notify: Notify | None = None,
) -> AsyncIterator[bytes]:
    """Decrypt an async iterable of bytes (or an ``asyncio.StreamReader``) as it arrives."""
    with _usable_key(key, backend, notify) as key:
        src = IterSource(source)
        plan = await _plan("decrypt", src, key, raw=raw, iv=iv, backend=backend,
                           options=options, verify=verify, notify=notify)
        async with contextlib.aclosing(run_iterable(plan, src)) as outputs:
            async for out in outputs:
                yield bytes(out) if not isinstance(out, bytes) else out
