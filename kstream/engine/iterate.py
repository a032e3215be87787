"""The async-iterable driver: segments from an async source, through the codec, yielded.

Used by ``encrypt_stream``/``decrypt_stream`` and whenever the input or the output is an
async file object rather than a file descriptor. A reader task and the codec's worker-thread
hop each stay up to two segments ahead, so the caller's source, the cipher and whatever the
consumer does with each result overlap; memory stays at a few segments.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Sequence,
)
from typing import Protocol, TypeVar, runtime_checkable

from kstream.backends.base import BLOCK
from kstream.engine.threads import run_blocking
from kstream.format import DEFAULT_SEGMENT
from kstream.segments import Buffer, Codec, RawCodec, SealCodec

_QUEUE_DEPTH = 2
#: Pieces below this size are joined with their neighbours before the cipher sees them.
SMALL_PIECE = 64 * 1024

T = TypeVar("T")
U = TypeVar("U")
Progress = Callable[[int], None]


@runtime_checkable
class Source(Protocol):
    """Something to read segments from: exactly ``n`` bytes per call, fewer only at the
    end, as pieces (views of the caller's buffers where possible) and their total."""

    async def read_pieces(self, n: int) -> tuple[list[Buffer], int]: ...


@runtime_checkable
class Sink(Protocol):
    """Something to write to; ``write`` writes everything or raises."""

    async def write(self, data: bytes) -> None: ...


async def read_exact(source: Source, n: int) -> bytes:
    """Read ``n`` bytes, or fewer only at end of input, as one object."""
    pieces, _ = await source.read_pieces(n)
    return b"".join(pieces)


class IterSource:
    """Adapts an async iterable of bytes (or an ``asyncio.StreamReader``) to a Source."""

    def __init__(self, source: AsyncIterable[bytes | bytearray] | asyncio.StreamReader) -> None:
        if isinstance(source, asyncio.StreamReader):
            self._iter: AsyncIterator[bytes | bytearray] = _stream_reader_pieces(source)
        else:
            self._iter = aiter(source)
        self._pieces: collections.deque[memoryview] = collections.deque()
        self._size = 0
        self._eof = False

    async def _pull(self) -> None:
        """Take the next piece from the iterable (or note its end)."""
        try:
            given = await anext(self._iter)
        except StopAsyncIteration:
            self._eof = True
            return
        if not isinstance(given, bytes | bytearray | memoryview):
            raise TypeError(f"source yielded {type(given).__name__}, expected bytes")
        if given:
            # A bytearray or view is copied: the caller may reuse its buffer once it has
            # handed it over, and kstream may hold on to it for a while (read-ahead).
            piece = memoryview(given if isinstance(given, bytes) else bytes(given))
            self._pieces.append(piece.cast("B"))
            self._size += len(piece)

    def _take(self, n: int) -> list[memoryview]:
        """The first ``n`` buffered bytes (or all there are) as views, splitting a piece
        at the boundary."""
        pieces: list[memoryview] = []
        got = 0
        while self._pieces and got < n:
            piece = self._pieces.popleft()
            take = n - got
            if len(piece) > take:
                self._pieces.appendleft(piece[take:])
                piece = piece[:take]
            pieces.append(piece)
            got += len(piece)
        self._size -= got
        return pieces

    async def read_pieces(self, n: int) -> tuple[list[Buffer], int]:
        """Exactly ``n`` bytes (fewer only at the end) as pieces, and their total.

        Pieces are passed on as views, not joined: a segment that straddles the caller's
        pieces (1 MiB reads against 1008 KiB segments) would otherwise cost a copy of the
        whole segment. Runs of small pieces are joined, so that tiny pieces cost one cipher
        call per :data:`SMALL_PIECE`, not one per piece.
        """
        while self._size < n and not self._eof:
            await self._pull()
        pieces = self._take(n)
        return coalesce(pieces, SMALL_PIECE), sum(len(p) for p in pieces)


def coalesce(pieces: Sequence[memoryview], small: int) -> list[Buffer]:
    """``pieces`` with every run of consecutive pieces shorter than ``small`` joined."""
    out: list[Buffer] = []
    run: list[memoryview] = []
    for piece in pieces:
        if len(piece) < small:
            run.append(piece)
            continue
        if run:
            out.append(b"".join(run) if len(run) > 1 else run[0])
            run = []
        out.append(piece)
    if run:
        out.append(b"".join(run) if len(run) > 1 else run[0])
    return out


async def _stream_reader_pieces(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while piece := await reader.read(DEFAULT_SEGMENT):
        yield piece


class AsyncFileSource:
    """Adapts an async binary file object (e.g. from ``aiofiles.open(..., 'rb')``)."""

    def __init__(self, file: object) -> None:
        self._file = file

    async def read_pieces(self, n: int) -> tuple[list[Buffer], int]:
        pieces: list[Buffer] = []
        got = 0
        while got < n:
            data = await self._file.read(n - got)  # type: ignore[attr-defined]
            if not data:
                break
            pieces.append(bytes(data))
            got += len(data)
        return pieces, got


async def read_ahead(
    read: Callable[[], Awaitable[T]],
    work: Callable[[T], U],
    is_last: Callable[[T], bool],
    done: Callable[[T], None] | None = None,
    *,
    hold_first: bool = False,
) -> AsyncGenerator[U, None]:
    """Yield ``work(item)``, run in a worker thread, for each item ``read`` returns, up to
    and including the one ``is_last`` accepts; ``done(item)`` runs on the loop after each.

    A reader task and a worker stage each stay up to two items ahead, so input I/O, the
    work and whatever the consumer does with each result (write it, send it) overlap. An
    error in reading or in the work is raised to the consumer in order, after the results
    before it. With ``hold_first`` nothing is read ahead until the first item's work has
    succeeded (decryption: the first tag verified, so the segment size that sizes every
    item is authentic before more than one item is held).
    """
    inbox: asyncio.Queue[T | Exception] = asyncio.Queue(_QUEUE_DEPTH)
    outbox: asyncio.Queue[U | Exception | None] = asyncio.Queue(_QUEUE_DEPTH)
    first_done = asyncio.Event()
    if not hold_first:
        first_done.set()

    async def reader() -> None:
        try:
            while True:
                item = await read()
                await inbox.put(item)
                if is_last(item):
                    return
                await first_done.wait()
        except Exception as exc:  # handed on, and raised to the consumer in order
            await inbox.put(exc)

    async def worker() -> None:
        try:
            while True:
                item = await inbox.get()
                if isinstance(item, Exception):
                    raise item
                out = await run_blocking(work, item)
                first_done.set()
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


async def iterate(
    source: Source, codec: Codec, progress: Progress | None = None
) -> AsyncGenerator[bytes | bytearray, None]:
    """Yield the codec's output for each segment ``source`` delivers; each result is a new
    object the consumer may keep.

    Encryption goes straight from the caller's pieces into each new output buffer (no
    joining copy first); opening needs a segment in one buffer to check its frame and tag.
    """
    unit = codec.unit
    by_pieces = codec if isinstance(codec, SealCodec | RawCodec) else None

    async def read() -> tuple[list[Buffer], int]:
        return await source.read_pieces(unit)

    def work(item: tuple[list[Buffer], int]) -> bytes | bytearray:
        pieces, n = item
        if by_pieces is not None:
            return by_pieces.process_pieces(pieces, n, n < unit)
        buf = bytearray(n + BLOCK)
        with memoryview(buf) as view:
            offset = 0
            for piece in pieces:
                view[offset : offset + len(piece)] = piece
                offset += len(piece)
            return b"".join(codec.process(view, n, n < unit))

    def counted(item: tuple[list[Buffer], int]) -> None:
        assert progress is not None
        progress(item[1])

    # Closed explicitly: closing this generator must stop the read-ahead's tasks now, not
    # whenever the loop finalizes the inner generator (the caller closes the cipher next).
    async with contextlib.aclosing(
        read_ahead(
            read,
            work,
            lambda item: item[1] < unit,
            counted if progress else None,
            hold_first=by_pieces is None,
        )
    ) as outputs:
        async for out in outputs:
            if out:
                yield out
