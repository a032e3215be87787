"""The streaming engine: read -> cipher -> write, as three overlapping asyncio stages.

The event loop only orchestrates. Every blocking step (a file read, a cipher call, a write)
runs in a worker thread on a whole batch of about 1 MiB (16 chunks of 63 KiB), so there is
one thread hop per stage per batch rather than per chunk, and reading, ciphering and
writing of consecutive batches overlap. Queues between the stages hold at most two batches,
so memory stays bounded by a few MiB whatever the input size.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import os
import stat
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Sequence,
)
from typing import Any, Protocol, TypeVar, runtime_checkable

from kstream.backends.base import CHUNK, CipherStream, FdCipherStream
from kstream.errors import IOFailure

#: Bytes handed to a worker thread at once: 16 chunks of 63 KiB (a multiple of 16, so only
#: the true end of a stream is ever a partial AES block).
BATCH = 16 * CHUNK
_QUEUE_DEPTH = 2

T = TypeVar("T")
U = TypeVar("U")
Progress = Callable[[int], None]


async def run_blocking(fn: Callable[..., T], *args: object, wait_on_cancel: bool = True) -> T:
    """Run ``fn(*args)`` in the default executor.

    With ``wait_on_cancel`` a cancelled caller still waits for the thread to finish before
    the cancellation propagates, so that a cipher stream is never closed while a worker is
    still using it. Reads that may block forever (a pipe) pass ``False``.
    """
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(None, fn, *args)
    if not wait_on_cancel:
        return await future
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):  # the cancellation is what matters now
            await future
        raise


@runtime_checkable
class Source(Protocol):
    """Something to read from: ``read(n)`` returns up to ``n`` bytes, empty only at EOF.

    The result may be a read-only view of a buffer the source will not change again.
    """

    async def read(self, n: int) -> bytes | memoryview: ...


@runtime_checkable
class Sink(Protocol):
    """Something to write to; ``write`` writes everything or raises."""

    async def write(self, data: bytes) -> None: ...


def widen_pipe(fd: int) -> None:
    """Give a pipe a buffer of one batch (best effort; default is 64 KiB).

    With 64 KiB pipes, every batch costs 16 wake-ups of kstream and of its neighbour in
    the shell pipeline; a 1 MiB pipe (the usual /proc/sys/fs/pipe-max-size) makes it one.
    """
    with contextlib.suppress(OSError):
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, BATCH)


class FdSource:
    """Reads a file descriptor (a file, a pipe, stdin), filling each batch in one hop."""

    def __init__(self, fd: int, name: str) -> None:
        self.fd = fd
        self.name = name
        widen_pipe(fd)

    def fill_into(self, view: memoryview, n: int) -> int:
        """Read until ``view[:n]`` is full or the input ends; return the count (blocking).

        A pipe delivers at most 64 KiB per read, so this loops inside one worker-thread
        call instead of costing an event-loop round trip per read.
        """
        got = 0
        try:
            while got < n:
                k = os.readv(self.fd, [view[got:n]])
                if k == 0:
                    break
                got += k
        except OSError as exc:
            raise IOFailure(f"cannot read {self.name}: {exc.strerror or exc}") from None
        return got

    def _fill(self, n: int) -> bytes:
        buf = bytearray(n)
        with memoryview(buf) as view:
            got = self.fill_into(view, n)
        del buf[got:]
        return bytes(buf)

    async def read(self, n: int) -> bytes:
        return await run_blocking(self._fill, n, wait_on_cancel=False)

    def is_regular(self) -> bool:
        """Whether the fd is a regular file (seekable, with a known size)."""
        try:
            return stat.S_ISREG(os.fstat(self.fd).st_mode)
        except OSError:
            return False

    def position(self) -> int:
        """The current file offset (where reading would continue)."""
        return os.lseek(self.fd, 0, os.SEEK_CUR)

    def size_hint(self) -> int | None:
        """Remaining bytes for a regular file (for progress bars), else ``None``."""
        try:
            st = os.fstat(self.fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            return max(st.st_size - os.lseek(self.fd, 0, os.SEEK_CUR), 0)
        except OSError:
            return None


def advance(views: list[memoryview], n: int) -> None:
    """Drop the first ``n`` bytes from a list of views (after a short vectored write)."""
    while views and n >= len(views[0]):
        n -= len(views.pop(0))
    if n:
        views[0] = views[0][n:]


class FdSink:
    """Writes to a file descriptor, handling short writes."""

    def __init__(self, fd: int, name: str) -> None:
        self.fd = fd
        self.name = name
        widen_pipe(fd)

    def write_parts(self, parts: Sequence[bytes | bytearray | memoryview]) -> None:
        """Write all of ``parts`` in order with ``writev``, handling short writes."""
        views = [memoryview(p) for p in parts if len(p)]
        try:
            while views:
                advance(views, os.writev(self.fd, views))
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise IOFailure(f"cannot write {self.name}: {exc.strerror or exc}") from None

    async def write(self, data: bytes) -> None:
        await run_blocking(self.write_parts, [data])


class IterSource:
    """Adapts an async iterable of bytes (or an ``asyncio.StreamReader``) to a Source."""

    def __init__(self, source: AsyncIterable[bytes] | asyncio.StreamReader) -> None:
        if isinstance(source, asyncio.StreamReader):
            self._iter: AsyncIterator[bytes] = _stream_reader_chunks(source)
        else:
            self._iter = aiter(source)
        self._pieces: collections.deque[memoryview] = collections.deque()
        self._size = 0
        self._eof = False

    async def _pull(self) -> None:
        """Take the next piece from the iterable (or note its end)."""
        try:
            chunk = await anext(self._iter)
        except StopAsyncIteration:
            self._eof = True
            return
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise TypeError(f"source yielded {type(chunk).__name__}, expected bytes")
        if chunk:
            # A bytearray or view is copied: the caller may reuse its buffer once it has
            # handed it over, and kstream may hold on to it for a while (read-ahead).
            piece = memoryview(chunk if isinstance(chunk, bytes) else bytes(chunk))
            self._pieces.append(piece.cast("B"))
            self._size += len(piece)

    def _take(self, n: int) -> list[memoryview]:
        """The first ``n`` buffered bytes (or all there are) as views, splitting a piece
        at the boundary."""
        parts: list[memoryview] = []
        got = 0
        while self._pieces and got < n:
            piece = self._pieces.popleft()
            take = n - got
            if len(piece) > take:
                self._pieces.appendleft(piece[take:])
                piece = piece[:take]
            parts.append(piece)
            got += len(piece)
        self._size -= got
        return parts

    async def read(self, n: int) -> bytes | memoryview:
        """Up to ``n`` bytes, copied only when several small pieces must be combined.

        A piece that covers the request is passed on as it is, or as a view of its first
        ``n`` bytes (the rest stays a view too). Small pieces are gathered until a quarter
        batch is reached, so that a source of tiny chunks does not cost a worker-thread hop
        per chunk, and are then joined.
        """
        want = min(n, BATCH // 4)
        while self._size < want and not self._eof:
            await self._pull()
        if self._pieces and len(self._pieces[0]) >= min(n, self._size):
            return self._take(n)[0]
        return b"".join(self._take(n))

    async def read_parts(self, n: int) -> tuple[list[bytes | memoryview], int]:
        """Exactly ``n`` bytes (fewer only at the end) as pieces, and their total.

        For a cipher that can encrypt piece after piece into one output buffer: where a
        batch straddles the caller's pieces (1 MiB reads against 1008 KiB segments),
        :meth:`read` must join them, which costs a copy of the whole batch. Runs of small
        pieces are still joined, so that tiny chunks cost one cipher call per
        :data:`SMALL_PIECE`, not one per chunk.
        """
        while self._size < n and not self._eof:
            await self._pull()
        parts = self._take(n)
        return coalesce(parts, SMALL_PIECE), sum(len(p) for p in parts)


#: Pieces below this size are joined with their neighbours before the cipher sees them.
SMALL_PIECE = 64 * 1024


def coalesce(parts: Sequence[memoryview], small: int) -> list[bytes | memoryview]:
    """``parts`` with every run of consecutive pieces shorter than ``small`` joined."""
    out: list[bytes | memoryview] = []
    run: list[memoryview] = []
    for part in parts:
        if len(part) < small:
            run.append(part)
            continue
        if run:
            out.append(b"".join(run) if len(run) > 1 else run[0])
            run = []
        out.append(part)
    if run:
        out.append(b"".join(run) if len(run) > 1 else run[0])
    return out


async def _stream_reader_chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while chunk := await reader.read(BATCH):
        yield chunk


class AsyncFileSource:
    """Adapts an async binary file object (e.g. from ``aiofiles.open(..., 'rb')``)."""

    def __init__(self, file: Source) -> None:
        self._file = file

    async def read(self, n: int) -> bytes:
        parts: list[bytes] = []
        got = 0
        while got < n:
            data = await self._file.read(n - got)
            if not data:
                break
            parts.append(bytes(data))
            got += len(data)
        return b"".join(parts)


async def read_exact(source: Source, n: int) -> bytes:
    """Read ``n`` bytes, or fewer only at end of input."""
    parts: list[bytes | memoryview] = []
    got = 0
    while got < n:
        data = await source.read(n - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def _fd_pump_applies(source: Source, stream: CipherStream) -> bool:
    return (
        isinstance(source, FdSource)
        and isinstance(stream, FdCipherStream)
        and stream.accepts_fd(source.fd)
    )


async def cipher_batches(
    source: Source, stream: CipherStream, progress: Progress | None = None
) -> AsyncGenerator[bytes, None]:
    """Yield the cipher's output for everything ``source`` delivers, reading ahead.

    A reader task and a cipher task each stay up to two batches ahead, so input I/O, the
    cipher's work and the consumer's handling of each piece overlap. When the source is a
    file descriptor and the stream can pull from it directly (the kernel backend's
    splice/sendfile), that path is used instead.
    """
    if _fd_pump_applies(source, stream):
        assert isinstance(source, FdSource) and isinstance(stream, FdCipherStream)
        while True:
            try:
                out, consumed = await run_blocking(stream.update_from_fd, source.fd, BATCH)
            except IOFailure:
                raise
            except OSError as exc:
                raise IOFailure(f"cannot read {source.name}: {exc.strerror or exc}") from None
            if consumed == 0:
                break
            if progress:
                progress(consumed)
            if out:
                yield out
        if tail := await run_blocking(stream.finalize):
            yield tail
        return

    def step(data: bytes | memoryview) -> bytes:
        return stream.update(data) if data else stream.finalize()

    def counted(data: bytes | memoryview) -> None:
        assert progress is not None
        progress(len(data))

    async def read() -> bytes | memoryview:
        return await source.read(BATCH)

    async for out in read_ahead(read, step, lambda data: not data,
                                counted if progress else None):
        if out:
            yield out


async def read_ahead(
    read: Callable[[], Awaitable[T]],
    work: Callable[[T], U],
    is_last: Callable[[T], bool],
    done: Callable[[T], None] | None = None,
) -> AsyncGenerator[U, None]:
    """Yield ``work(item)``, run in a worker thread, for each item ``read`` returns, up to
    and including the one ``is_last`` accepts; ``done(item)`` runs on the loop after each.

    A reader task and a worker stage each stay up to two items ahead, so input I/O, the
    work and whatever the consumer does with each result (write it, send it) overlap. An
    error in reading or in the work is raised to the consumer in order, after the results
    before it.
    """
    inbox: asyncio.Queue[T | Exception] = asyncio.Queue(_QUEUE_DEPTH)
    outbox: asyncio.Queue[U | Exception | None] = asyncio.Queue(_QUEUE_DEPTH)

    async def reader() -> None:
        try:
            while True:
                item = await read()
                await inbox.put(item)
                if is_last(item):
                    return
        except Exception as exc:  # handed on, and raised to the consumer in order
            await inbox.put(exc)

    async def worker() -> None:
        try:
            while True:
                item = await inbox.get()
                if isinstance(item, Exception):
                    raise item
                out = await run_blocking(work, item)
                if done is not None:
                    done(item)
                await outbox.put(out)
                if is_last(item):
                    break
            await outbox.put(None)
        except Exception as exc:
            await outbox.put(exc)

    tasks = [asyncio.create_task(reader()), asyncio.create_task(worker())]
    try:
        while (result := await outbox.get()) is not None:
            if isinstance(result, Exception):
                raise result
            yield result
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def pump(
    source: Source, stream: CipherStream, sink: Sink, progress: Progress | None = None
) -> int:
    """Cipher everything from ``source`` into ``sink``; writing overlaps the next batch.

    Returns the number of bytes written.
    """
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(_QUEUE_DEPTH)
    written = 0

    async def writer() -> None:
        nonlocal written
        while (data := await queue.get()) is not None:
            await sink.write(data)
            written += len(data)

    async def producer() -> None:
        batches = cipher_batches(source, stream, progress)
        try:
            async for out in batches:
                await queue.put(out)
        finally:
            await batches.aclose()
        await queue.put(None)

    await run_together(writer(), producer())
    return written


async def run_together(*stages: Coroutine[Any, Any, None]) -> None:
    """Run pipeline stages concurrently; if one fails, cancel the rest and raise its error
    itself (not the task group's wrapper), so callers see kstream's own exceptions."""
    try:
        async with asyncio.TaskGroup() as tg:
            for stage in stages:
                tg.create_task(stage)
    except BaseExceptionGroup as group:
        raise _first_error(group) from None


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error that made a task group fail (its other tasks were only cancelled)."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc
