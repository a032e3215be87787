"""The zero-allocation streaming path: a few reused buffers, encrypted in place.

Used when input and output are file descriptors (pipes, stdin/stdout, files that cannot
take the parallel path) and the cipher can work in place (OpenSSL's ``update_into``). Three
~1 MiB buffers circulate between a reader thread and a thread that transforms and writes
them, so reading and ciphering-and-writing of consecutive batches overlap while memory
stays at a few MiB. It exists because on these machines allocating a fresh 1 MiB object per
batch (page faults on new memory) costs more than the encryption itself.

The transforms keep the exact semantics of :mod:`kstream.auth`: a batch is exactly one
segment (S bytes of plaintext, or S + 20 bytes of framed input), a short batch means end
of input, and a decryption batch that is not an intact non-final segment is handed to a
:class:`~kstream.auth.SegmentOpener`, which takes over from that segment on and reports
precisely what is wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kstream.auth import (
    FRAME_SIZE,
    TAG_SIZE,
    SegmentOpener,
    SegmentSealer,
    check_tag,
    parse_frame,
    seal_parts,
)
from kstream.backends.base import BLOCK, CipherStream, InPlaceStream
from kstream.pipeline import (
    BATCH,
    FdSink,
    FdSource,
    IterSource,
    Progress,
    Sink,
    Source,
    pump,
    read_ahead,
)

Parts = list[bytes | memoryview]
_POOL = 3


class Transform(Protocol):
    """Turns one batch (``view[:n]``, in a buffer it may overwrite) into parts to write."""

    batch: int

    def process(self, view: memoryview, n: int, final: bool) -> Parts: ...


def _encrypt_parts_into(stream: InPlaceStream, parts: Sequence[bytes | memoryview],
                        out: memoryview) -> None:
    """Encrypt ``parts`` one after another into ``out``, which has room for all of them and
    for the 15 bytes past the end that ``update_into`` insists on."""
    offset = 0
    for part in parts:
        stream.update_into(part, out[offset:])
        offset += len(part)


class RawTransform:
    """Bare CTR (``--raw``)."""

    def __init__(self, stream: InPlaceStream, batch: int) -> None:
        self.stream, self.batch = stream, batch

    def process(self, view: memoryview, n: int, final: bool) -> Parts:
        data = view[:n]
        self.stream.update_into(data, view)
        return [data]

    def encrypt_parts(self, parts: Sequence[bytes | memoryview], n: int,
                      final: bool) -> bytearray:
        """The ciphertext of ``parts`` (``n`` bytes in all) in one new buffer."""
        out = bytearray(n + BLOCK)
        with memoryview(out) as view:
            _encrypt_parts_into(self.stream, parts, view)
        del out[n:]
        return out


class SealTransform:
    """Encryption with one authenticated segment per batch."""

    def __init__(self, stream: InPlaceStream, mac: AESGCM, segment: int,
                 first_index: int = 0) -> None:
        self.stream, self.mac, self.batch = stream, mac, segment
        self.index = first_index

    def process(self, view: memoryview, n: int, final: bool) -> Parts:
        data = view[:n]
        self.stream.update_into(data, view)
        frame, tag = seal_parts(self.mac, self.index, final, data)
        self.index += 1
        return [frame, data, tag]

    def encrypt_parts(self, parts: Sequence[bytes | memoryview], n: int,
                      final: bool) -> bytearray:
        """One sealed segment (frame, ciphertext of ``parts``, tag) in one new buffer:
        the input is read once, by the cipher, and nothing is copied after it."""
        out = bytearray(FRAME_SIZE + n + TAG_SIZE)
        with memoryview(out) as view:
            _encrypt_parts_into(self.stream, parts, view[FRAME_SIZE:])
            frame, tag = seal_parts(self.mac, self.index, final,
                                    view[FRAME_SIZE:FRAME_SIZE + n])
            view[:FRAME_SIZE] = frame
            view[FRAME_SIZE + n:] = tag
        self.index += 1
        return out


class OpenTransform:
    """Decryption of one framed segment per batch; anything unusual goes to the opener."""

    def __init__(self, stream: CipherStream, mac: AESGCM, segment: int) -> None:
        self.stream, self.mac, self.segment = stream, mac, segment
        self.batch = segment + FRAME_SIZE + TAG_SIZE
        self.index = 0
        self.opener: SegmentOpener | None = None

    def process(self, view: memoryview, n: int, final: bool) -> Parts:
        if self.opener is None and n == self.batch:
            last, size = parse_frame(view, 0, self.segment, self.index)
            if not last and size == self.segment:
                ciphertext = view[FRAME_SIZE:FRAME_SIZE + size]
                check_tag(self.mac, self.index, last, ciphertext, view[FRAME_SIZE + size:n])
                assert isinstance(self.stream, InPlaceStream)
                self.stream.update_into(ciphertext, view[FRAME_SIZE:])
                self.index += 1
                return [ciphertext]
        if self.opener is None:
            self.opener = SegmentOpener(self.stream, self.mac, self.segment, self.index)
        out: Parts = [self.opener.update(bytes(view[:n]))]
        if final:
            out.append(self.opener.finalize())
        return out


class PartsTransform(Protocol):
    """Encrypts a batch given as pieces into a new buffer (see :func:`encrypt_pieces`)."""

    batch: int

    def encrypt_parts(self, parts: Sequence[bytes | memoryview], n: int,
                      final: bool) -> bytearray: ...


def parts_transform(stream: CipherStream) -> PartsTransform | None:
    """The piecewise encryptor equivalent to ``stream``, if there is one (OpenSSL,
    raw or sealed encryption; decryption must see whole segments to check their tags)."""
    transform = in_place_transform(stream)
    return transform if isinstance(transform, RawTransform | SealTransform) else None


async def encrypt_pieces(source: IterSource,
                         transform: PartsTransform) -> AsyncGenerator[bytearray, None]:
    """Encrypt what an async iterable delivers, one batch per worker-thread hop, straight
    from the caller's pieces into each new output buffer (no joining copy first).

    Each result is a new ``bytearray`` that the consumer may keep. Reading from the
    iterable, the cipher's hop and the consumer's handling of each result overlap, as in
    :func:`~kstream.pipeline.cipher_batches`.
    """
    batch = transform.batch

    async def read() -> tuple[list[bytes | memoryview], int]:
        return await source.read_parts(batch)

    def work(item: tuple[list[bytes | memoryview], int]) -> bytearray:
        parts, n = item
        return transform.encrypt_parts(parts, n, n < batch)

    async for out in read_ahead(read, work, lambda item: item[1] < batch):
        if out:
            yield out


def in_place_transform(stream: CipherStream) -> Transform | None:
    """The in-place equivalent of ``stream`` (raw, sealer or opener), if its cipher has one."""
    inner = stream.cipher if isinstance(stream, SegmentSealer | SegmentOpener) else stream
    if not isinstance(inner, InPlaceStream):
        return None
    if isinstance(stream, SegmentSealer):
        return SealTransform(inner, stream.mac, stream.segment)
    if isinstance(stream, SegmentOpener):
        return OpenTransform(stream.cipher, stream.mac, stream.segment)
    return RawTransform(inner, BATCH)


async def pump_fds_or_streams(
    source: Source, stream: CipherStream, sink: Sink, progress: Progress | None = None
) -> None:
    """The in-place pump for fd to fd with an in-place cipher, else the general pump."""
    transform = in_place_transform(stream)
    if transform is not None and isinstance(source, FdSource) and isinstance(sink, FdSink):
        await pump_in_place(source, transform, sink, progress)
    else:
        await pump(source, stream, sink, progress)


class _InPlacePump:
    """Two worker threads and a few buffers: one thread fills buffers from the source, the
    other transforms each in place and writes it, and they hand buffers back and forth
    through thread-safe queues.

    Why not one event-loop round trip per batch, as elsewhere: on a pipe, the loop's part
    of two hops per ~1 MiB (futures, wake-ups through the loop's self-pipe, callbacks) was
    about 8% of the time of ``cat | kstream encrypt - - | cat`` on the development machine.
    The loop still orchestrates: it starts the threads, awaits the result, and on
    cancellation stops the writer after its current batch.
    """

    def __init__(self, source: FdSource, transform: Transform, sink: FdSink,
                 progress: Callable[[int], None] | None) -> None:
        self.source, self.transform, self.sink = source, transform, sink
        self.progress = progress
        self.free: queue.SimpleQueue[bytearray | None] = queue.SimpleQueue()
        self.ready: queue.SimpleQueue[tuple[bytearray, int, bool] | BaseException | None] = (
            queue.SimpleQueue())
        self.stopped = threading.Event()
        for _ in range(_POOL):
            self.free.put(bytearray(transform.batch + BLOCK))

    def read_all(self) -> None:
        """Fill buffers until the input ends (the reader thread)."""
        batch = self.transform.batch
        try:
            while (buf := self.free.get()) is not None and not self.stopped.is_set():
                n = self.source.fill_into(memoryview(buf), batch)
                final = n < batch
                self.ready.put((buf, n, final))
                if final:
                    return
        except BaseException as exc:  # raised by the writer thread, in order
            self.ready.put(exc)

    def write_all(self) -> None:
        """Transform and write each filled buffer, in order (the writer thread)."""
        while (item := self.ready.get()) is not None and not self.stopped.is_set():
            if isinstance(item, BaseException):
                raise item
            buf, n, final = item
            self.sink.write_parts(self.transform.process(memoryview(buf), n, final))
            if self.progress is not None:
                self.progress(n)
            self.free.put(buf)
            if final:
                return

    def stop(self) -> None:
        """Make both threads return at their next step (neither touches the cipher then)."""
        self.stopped.set()
        self.ready.put(None)
        self.free.put(None)


async def pump_in_place(
    source: FdSource, transform: Transform, sink: FdSink, progress: Progress | None = None
) -> None:
    """Run ``source`` through ``transform`` into ``sink`` with a small pool of buffers."""
    loop = asyncio.get_running_loop()
    report = None
    if progress is not None:
        def report(n: int) -> None:
            loop.call_soon_threadsafe(progress, n)

    pump = _InPlacePump(source, transform, sink, report)
    # The reader may block for good on a pipe that never ends: nothing waits for it.
    loop.run_in_executor(None, pump.read_all)
    writer = loop.run_in_executor(None, pump.write_all)
    try:
        await asyncio.shield(writer)
    except asyncio.CancelledError:
        pump.stop()
        with contextlib.suppress(Exception):  # the cancellation is what matters now
            await writer  # so that the cipher is never closed under the writer's feet
        raise
    finally:
        pump.stop()
