"""The coroutine API: encrypt and decrypt files, file descriptors and async byte streams.

A :class:`Session` holds what stays the same over many runs: the key or passphrase, the
backend (resolved by the first run, then reused: one kernel probe and one notice), and the
options. Each run is the same few steps: read or make the header (deriving a passphrase's
key from it), make the plan (:mod:`kstream.engine.plan`: key, backend, codec), run it
(:mod:`kstream.engine.drive`). The module-level coroutines are one-run sessions. The CLI is
built on the same objects (and, for one small file, on the same plan and codec run without
an event loop), so the library and the tool cannot disagree.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal, cast, overload

from kstream.atomic import AtomicFile, check_output_path, open_stream
from kstream.backends.base import Backend, CipherOptions
from kstream.engine.drive import ranges_apply, run, run_iterable, run_ranges_plan
from kstream.engine.fdio import FdSink, FdSource
from kstream.engine.iterate import AsyncFileSource, IterSource, Sink, Source, read_exact
from kstream.engine.plan import Plan, RunOptions, parse_header, planned, resolve_backend
from kstream.engine.raw import check_iv
from kstream.engine.threads import run_blocking
from kstream.errors import KstreamError, UsageError, io_errors
from kstream.format import DEFAULT_SEGMENT, HEADER_SIZE, Header, header_size
from kstream.keys.key import Key
from kstream.keys.passphrase import Derivations, PassphraseArg
from kstream.keys.unlock import make_secret
from kstream.memory import tune_malloc
from kstream.notices import log_notice

if TYPE_CHECKING:
    from kstream.fileobj.reader import DecryptedFile
    from kstream.fileobj.writer import EncryptingFile

BackendName = Literal["auto", "kernel", "openssl"]
#: A name, or a backend object resolved once for a run over many files
#: (:func:`kstream.engine.plan.resolve_backend`).
BackendArg = BackendName | Backend
Notify = Callable[[str], None]
Progress = Callable[[int], None]
#: A path, an open file descriptor (the CLI's ``-``), or an async binary file object.
FileArg = str | os.PathLike[str] | int | Any
Direction = Literal["encrypt", "decrypt"]
#: Seconds a stream output (a FIFO) may wait for its reader before a notice says so.
FIFO_NOTICE_AFTER = 3.0


class Session:
    """A key or a passphrase, a backend and options, for any number of runs.

    Exactly one of ``key`` and ``passphrase`` (bytes, str, or a function returning one,
    asked only when a run needs it). ``work_factor`` is scrypt's log2 N for files this
    session encrypts with a passphrase (default 18); a file to decrypt whose work factor is
    above ``max_work_factor`` (default 20) is refused before any work, since the file may be
    an attacker's. ``backend``: ``"auto"`` (the kernel where it works, else OpenSSL, with a
    notice), ``"kernel"`` or ``"openssl"``. ``verify`` checks every kernel output against a
    second implementation. ``notify`` receives the notices (default: the ``kstream``
    logger). The first run resolves the backend; later runs reuse it.
    """

    __slots__ = ("_options", "_secret")

    def __init__(
        self,
        *,
        key: Key | None = None,
        passphrase: PassphraseArg | Derivations | None = None,
        work_factor: int | None = None,
        max_work_factor: int | None = None,
        backend: BackendArg = "auto",
        verify: bool = False,
        options: CipherOptions | None = None,
        notify: Notify | None = None,
    ) -> None:
        self._secret = make_secret(key, passphrase, work_factor, max_work_factor)
        self._options = RunOptions(
            notify=notify or log_notice, backend=backend, options=options, verify=verify
        )

    def __repr__(self) -> str:  # never the key or the passphrase
        by = "key" if self._secret.key is not None else "passphrase"
        backend = self._options.backend
        name = backend if isinstance(backend, str) else backend.name
        return f"<kstream.Session {by}, backend {name}>"

    @contextlib.asynccontextmanager
    async def _planned(
        self,
        direction: Direction,
        source: Source | None,
        raw_iv: bytes | None,
        header: Header | None = None,
    ) -> AsyncIterator[Plan]:
        """:func:`~kstream.engine.plan.planned`, after reading a kstream file's header from
        ``source`` when decrypting one (unless ``header`` is given). Every run of the API
        passes here: malloc is tuned for its worker threads (:mod:`kstream.memory`), and the
        first plan's backend is kept for the runs after it."""
        tune_malloc()
        if raw_iv is None and header is None and direction == "decrypt":
            assert source is not None
            header = await read_header(source)
        with planned(
            direction == "encrypt", self._secret, self._options, raw_iv=raw_iv, header=header
        ) as plan:
            if isinstance(self._options.backend, str):
                self._options = self._options._replace(backend=plan.backend)
            yield plan

    async def encrypt_file(
        self,
        src: FileArg,
        dst: FileArg,
        *,
        force: bool = False,
        jobs: int | None = None,
        progress: Progress | None = None,
        raw: bool = False,
        iv: bytes | None = None,
    ) -> None:
        """Encrypt ``src`` into ``dst``.

        ``dst`` as a path is written atomically (temp file, fsync, rename) and is refused if
        it exists unless ``force``; a path that is a character device or a FIFO
        (``/dev/null``, ``/dev/stdout``, ``/dev/fd/N``) is written directly. A regular input
        file into a path is processed by ``jobs`` parallel ranges (default: the CPU count).
        ``progress`` is called with each amount of input done. ``raw=True`` writes bare
        AES-CTR starting at ``iv`` with no header (for interoperating with ``openssl enc``);
        otherwise the IV is fresh and random.
        """
        await self._file("encrypt", src, dst, force, jobs, progress, check_iv(iv, raw))

    async def decrypt_file(
        self,
        src: FileArg,
        dst: FileArg,
        *,
        force: bool = False,
        jobs: int | None = None,
        progress: Progress | None = None,
        raw: bool = False,
        iv: bytes | None = None,
    ) -> None:
        """Decrypt ``src`` into ``dst``, checking every segment's tag; same output
        guarantees as :meth:`encrypt_file`: a file that fails leaves no output."""
        await self._file("decrypt", src, dst, force, jobs, progress, check_iv(iv, raw))

    async def encrypt_stream(
        self,
        source: AsyncIterable[bytes] | Any,
        *,
        raw: bool = False,
        iv: bytes | None = None,
    ) -> AsyncGenerator[bytes | bytearray, None]:
        """Encrypt an async iterable of bytes (or an ``asyncio.StreamReader``) as it arrives.

        Yields the same bytes :meth:`encrypt_file` would write, in pieces of about 1 MiB,
        each a new object the caller may keep: ``bytearray`` where the cipher encrypts the
        caller's pieces straight into it (saving a copy of every segment), ``bytes``
        otherwise.
        """
        src = IterSource(source)
        async with (
            self._planned("encrypt", src, check_iv(iv, raw)) as plan,
            contextlib.aclosing(run_iterable(plan, src)) as outputs,
        ):
            async for out in outputs:
                yield out

    async def decrypt_stream(
        self,
        source: AsyncIterable[bytes] | Any,
        *,
        raw: bool = False,
        iv: bytes | None = None,
    ) -> AsyncGenerator[bytes, None]:
        """Decrypt an async iterable of bytes (or an ``asyncio.StreamReader``) as it
        arrives; no byte of a segment is yielded before its tag verifies."""
        src = IterSource(source)
        async with (
            self._planned("decrypt", src, check_iv(iv, raw)) as plan,
            contextlib.aclosing(run_iterable(plan, src)) as outputs,
        ):
            async for out in outputs:
                yield bytes(out) if not isinstance(out, bytes) else out

    @overload
    def open(
        self,
        file: FileArg,
        mode: Literal["rb"] = ...,
        *,
        cache_segments: int = ...,
        segment_size: int = ...,
        read_ahead: bool = ...,
        force: bool = ...,
        close_file: bool = ...,
    ) -> DecryptedFile: ...

    @overload
    def open(
        self,
        file: FileArg,
        mode: Literal["wb"],
        *,
        cache_segments: int = ...,
        segment_size: int = ...,
        read_ahead: bool = ...,
        force: bool = ...,
        close_file: bool = ...,
    ) -> EncryptingFile: ...

    def open(
        self,
        file: FileArg,
        mode: Literal["rb", "wb"] = "rb",
        *,
        cache_segments: int | None = None,
        segment_size: int | None = None,
        read_ahead: bool = True,
        force: bool = False,
        close_file: bool = False,
    ) -> DecryptedFile | EncryptingFile:
        """:func:`kstream.open` with this session's key or passphrase, backend and options:
        a seekable reader of a kstream file's plaintext (``"rb"``) or a writer that
        encrypts (``"wb"``); the other parameters are :func:`kstream.open`'s."""
        from kstream.fileobj.body import DEFAULT_CACHE_SEGMENTS
        from kstream.fileobj.opener import open_file  # the file objects load when used

        secret, run = self._secret, self._options
        if isinstance(run.backend, str):  # resolved here: the file keeps no plan to ask
            run = self._options = run._replace(
                backend=resolve_backend(secret.key, run.backend, run.notify, run.options)
            )
        # make_secret, which open_file calls, also takes the CLI's shared Derivations.
        passphrase = cast("PassphraseArg | None", secret.passphrase)
        return open_file(
            file,
            mode,
            key=secret.key,
            passphrase=passphrase,
            work_factor=secret.work_factor,
            max_work_factor=secret.max_work_factor,
            backend=run.backend,
            options=run.options,
            notify=run.notify,
            cache_segments=DEFAULT_CACHE_SEGMENTS if cache_segments is None else cache_segments,
            segment_size=DEFAULT_SEGMENT if segment_size is None else segment_size,
            read_ahead=read_ahead,
            force=force,
            close_file=close_file,
        )

    async def _file(
        self,
        direction: Direction,
        src: FileArg,
        dst: FileArg,
        force: bool,
        jobs: int | None,
        progress: Progress | None,
        raw_iv: bytes | None,
    ) -> None:
        """One file (or descriptor, or async file object) into another, atomic when
        ``dst`` is a path."""
        dst_path = os.fspath(dst) if isinstance(dst, str | os.PathLike) else None
        stream = False
        if dst_path is not None:
            src_path = os.fspath(src) if isinstance(src, str | os.PathLike) else None
            stream = check_output_path(
                dst_path, force=force, src=src_path, no_terminal=direction == "encrypt"
            )
        source, owned_fd = await open_source(src)
        try:
            if dst_path is None:
                sink = _sink_for(dst)
                with _pipe_detail(sink, _name_of(dst)):
                    async with self._planned(direction, source, raw_iv) as plan:
                        await run(plan, source, sink, progress)
            elif stream:
                await self._into_stream(direction, source, dst_path, progress, raw_iv)
            else:
                await self._into_new_file(
                    direction, source, dst_path, force, jobs, progress, raw_iv
                )
        finally:
            if owned_fd is not None:
                os.close(owned_fd)

    async def _into_stream(
        self,
        direction: Direction,
        source: Source,
        path: str,
        progress: Progress | None,
        raw_iv: bytes | None,
    ) -> None:
        """Into a character device, a FIFO or one of this process's descriptors: written
        directly by the stream driver."""
        fd, owned = await _open_stream_output(path, self._options.notify)
        sink = FdSink(fd, f"output '{path}'")
        try:
            with _pipe_detail(sink, f"'{path}'"):
                async with self._planned(direction, source, raw_iv) as plan:
                    await run(plan, source, sink, progress)
        finally:
            if owned:
                os.close(fd)

    async def _into_new_file(
        self,
        direction: Direction,
        source: Source,
        path: str,
        force: bool,
        jobs: int | None,
        progress: Progress | None,
        raw_iv: bytes | None,
    ) -> None:
        """Into a new file, published only once complete and synced."""
        out = AtomicFile(path, force=force)
        try:
            sink = FdSink(out.fd, f"output '{path}'")
            await self._into_file(direction, source, sink, jobs, progress, raw_iv)
            await run_blocking(out.sync)  # a cancellation here still removes the output
            out.publish()  # no await after the output appears: no cancellation either
        except BaseException:
            out.abort()
            raise

    async def _into_file(
        self,
        direction: Direction,
        source: Source,
        sink: FdSink,
        jobs: int | None,
        progress: Progress | None,
        raw_iv: bytes | None,
    ) -> None:
        """By parallel ranges when the input is a regular file (and no explicit
        splice/sendfile asks otherwise), else by the stream driver. One plan either way,
        also when ranges hand a damaged file (its size fits no intact file) to the stream
        driver, which then names exactly what is wrong."""
        if not isinstance(source, FdSource) or not ranges_apply(source, self._options.options):
            async with self._planned(direction, source, raw_iv) as plan:
                await run(plan, source, sink, progress)
            return
        base = source.position()
        size = source.size_hint() or 0
        header = None
        if direction == "decrypt" and raw_iv is None:
            header = pread_header(source, base)
        async with self._planned(direction, None, raw_iv, header) as plan:
            if await run_ranges_plan(
                plan, source, sink, size, base, jobs or os.cpu_count() or 1, progress
            ):
                return
            assert header is not None  # only a kstream file's body can fit no intact layout
            os.lseek(source.fd, base + header.size, os.SEEK_SET)  # the header is read already
            await run(plan, source, sink, progress)


async def read_header(source: Source) -> Header:
    """Read and parse the whole header at the start of ``source``: the fixed 32 bytes,
    then the passphrase block if the flags announce one."""
    data = await read_exact(source, HEADER_SIZE)
    if (size := header_size(data)) > len(data) == HEADER_SIZE:
        data += await read_exact(source, size - HEADER_SIZE)
    return parse_header(data)


def pread_header(source: FdSource, base: int) -> Header:
    """:func:`read_header` for a regular file at ``base``, without moving its position."""
    with io_errors("read", source.name):
        data = os.pread(source.fd, HEADER_SIZE, base)
        if (size := header_size(data)) > len(data) == HEADER_SIZE:
            data += os.pread(source.fd, size - HEADER_SIZE, base + HEADER_SIZE)
    return parse_header(data)


def _name_of(arg: FileArg) -> str:
    if isinstance(arg, int):
        return {0: "stdin", 1: "stdout"}.get(arg, f"fd {arg}")
    if isinstance(arg, str | os.PathLike):
        return f"'{os.fspath(arg)}'"
    return repr(arg)


async def _open_input(path: str) -> int:
    """``open(path)`` in a worker thread, which a cancellation does not wait for: opening a
    FIFO blocks until a writer comes, maybe never, and Ctrl-C must not wait for that. If
    the open completes after all, the descriptor is closed there and then."""
    future = asyncio.get_running_loop().run_in_executor(
        None, os.open, path, os.O_RDONLY | os.O_CLOEXEC
    )
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:

        def close_late(done: asyncio.Future[int]) -> None:
            if not done.cancelled() and done.exception() is None:
                os.close(done.result())

        future.add_done_callback(close_late)
        raise


async def open_source(src: FileArg) -> tuple[Source, int | None]:
    """A Source for ``src`` and the fd kstream opened for it (to close), if any."""
    if isinstance(src, int):
        return FdSource(src, _name_of(src)), None
    if isinstance(src, str | os.PathLike):
        path = os.fspath(src)
        with io_errors("open input", f"'{path}'"):
            fd = await _open_input(path)
        return FdSource(fd, f"input '{path}'"), fd
    if hasattr(src, "read"):
        return AsyncFileSource(src), None
    raise UsageError(f"cannot read from {type(src).__name__}: give a path or an async file")


def _is_pipe(fd: int) -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(fd).st_mode)
    except OSError:
        return False


def _sink_for(dst: FileArg) -> Sink | FdSink:
    if isinstance(dst, int):
        return FdSink(dst, _name_of(dst))
    if hasattr(dst, "write"):
        return cast(Sink, dst)
    raise UsageError(f"cannot write to {type(dst).__name__}: give a path or a file")


@contextlib.contextmanager
def _pipe_detail(sink: Sink | FdSink, name: str) -> Iterator[None]:
    """A failure after bytes went into a pipe says how many: its reader has them (a tar
    extracting them, say) and may use them, and nothing can take them back."""
    try:
        yield
    except KstreamError as exc:
        if isinstance(sink, FdSink) and sink.written and _is_pipe(sink.fd):
            exc.add_detail(
                f"{sink.written} bytes had already gone into the pipe {name} "
                "(nothing to remove: a pipe cannot take them back)"
            )
        raise


async def _open_stream_output(path: str, notify: Notify) -> tuple[int, bool]:
    """:func:`~kstream.atomic.open_stream`, waiting for a FIFO's reader: polled, since a
    blocking open would hold a worker thread that no cancellation (Ctrl-C) can free. A
    wait of :data:`FIFO_NOTICE_AFTER` seconds is said once, or a run whose reader never
    comes would look hung."""
    loop = asyncio.get_running_loop()
    notice_at = loop.time() + FIFO_NOTICE_AFTER
    wait, said = 0.01, False
    while (opened := open_stream(path)) is None:
        if not said and loop.time() >= notice_at:
            notify(
                f"waiting for a reader to open the FIFO '{path}'; nothing is written "
                "before one does (Ctrl-C stops)"
            )
            said = True
        await asyncio.sleep(wait)
        wait = min(wait * 2, 0.2)
    return opened


async def encrypt_file(
    src: FileArg,
    dst: FileArg,
    *,
    key: Key | None = None,
    passphrase: PassphraseArg | Derivations | None = None,
    work_factor: int | None = None,
    backend: BackendArg = "auto",
    force: bool = False,
    raw: bool = False,
    iv: bytes | None = None,
    verify: bool = False,
    options: CipherOptions | None = None,
    notify: Notify | None = None,
    progress: Progress | None = None,
    jobs: int | None = None,
) -> None:
    """Encrypt ``src`` into ``dst`` with ``key``, or with ``passphrase`` (exactly one): a
    one-run :class:`Session` (see it and :meth:`Session.encrypt_file` for the parameters).
    """
    session = Session(
        key=key,
        passphrase=passphrase,
        work_factor=work_factor,
        backend=backend,
        verify=verify,
        options=options,
        notify=notify,
    )
    await session.encrypt_file(src, dst, force=force, jobs=jobs, progress=progress, raw=raw, iv=iv)


async def decrypt_file(
    src: FileArg,
    dst: FileArg,
    *,
    key: Key | None = None,
    passphrase: PassphraseArg | Derivations | None = None,
    max_work_factor: int | None = None,
    backend: BackendArg = "auto",
    force: bool = False,
    raw: bool = False,
    iv: bytes | None = None,
    verify: bool = False,
    options: CipherOptions | None = None,
    notify: Notify | None = None,
    progress: Progress | None = None,
    jobs: int | None = None,
) -> None:
    """Decrypt ``src`` into ``dst``: a one-run :class:`Session` (see it and
    :meth:`Session.decrypt_file`)."""
    session = Session(
        key=key,
        passphrase=passphrase,
        max_work_factor=max_work_factor,
        backend=backend,
        verify=verify,
        options=options,
        notify=notify,
    )
    await session.decrypt_file(src, dst, force=force, jobs=jobs, progress=progress, raw=raw, iv=iv)


async def encrypt_stream(
    source: AsyncIterable[bytes] | Any,
    *,
    key: Key | None = None,
    passphrase: PassphraseArg | Derivations | None = None,
    work_factor: int | None = None,
    backend: BackendArg = "auto",
    raw: bool = False,
    iv: bytes | None = None,
    verify: bool = False,
    options: CipherOptions | None = None,
    notify: Notify | None = None,
) -> AsyncGenerator[bytes | bytearray, None]:
    """Encrypt an async iterable of bytes as it arrives: a one-run :class:`Session` (see
    :meth:`Session.encrypt_stream`)."""
    session = Session(
        key=key,
        passphrase=passphrase,
        work_factor=work_factor,
        backend=backend,
        verify=verify,
        options=options,
        notify=notify,
    )
    async with contextlib.aclosing(session.encrypt_stream(source, raw=raw, iv=iv)) as outputs:
        async for out in outputs:
            yield out


async def decrypt_stream(
    source: AsyncIterable[bytes] | Any,
    *,
    key: Key | None = None,
    passphrase: PassphraseArg | Derivations | None = None,
    max_work_factor: int | None = None,
    backend: BackendArg = "auto",
    raw: bool = False,
    iv: bytes | None = None,
    verify: bool = False,
    options: CipherOptions | None = None,
    notify: Notify | None = None,
) -> AsyncGenerator[bytes, None]:
    """Decrypt an async iterable of bytes as it arrives: a one-run :class:`Session` (see
    :meth:`Session.decrypt_stream`)."""
    session = Session(
        key=key,
        passphrase=passphrase,
        max_work_factor=max_work_factor,
        backend=backend,
        verify=verify,
        options=options,
        notify=notify,
    )
    async with contextlib.aclosing(session.decrypt_stream(source, raw=raw, iv=iv)) as outputs:
        async for out in outputs:
            yield out
