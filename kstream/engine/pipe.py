"""The fd stream driver: a pipe, stdin/stdout or a file that cannot take parallel ranges.

Two worker threads and a few reused segment buffers: one thread fills buffers from the
source, the other runs each through the codec (into its one reused output buffer) and writes
it, and they hand buffers back and forth through thread-safe queues. Reading and
ciphering-and-writing of consecutive segments overlap while memory stays at a few segments,
and the event loop is not involved per segment at all: it starts the threads, awaits the
result, and on cancellation stops the writer after its current segment. Neither thread
outlives the call: the reader reads its own descriptor and is woken and waited for
(:class:`~kstream.engine.fdio.FdReader`), so nothing reads the caller's input once
:func:`pump` has returned or raised.

A kernel cipher that pulls its input straight from the fd (``--transfer splice`` or
``sendfile``) has its own loop, :func:`pump_from_fd`, in one worker thread.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable

from kstream.backends.base import BLOCK, FdCipherStream
from kstream.engine.fdio import FdReader, FdSink, FdSource
from kstream.engine.threads import from_worker, wait_for_worker
from kstream.errors import io_errors
from kstream.segments import Codec, OpenCodec, SealCodec

Progress = Callable[[int], None]
#: Buffers in flight once segment 0 has gone through the codec (one being read, one being
#: ciphered and written, one spare). Before that only one exists: the segment size comes
#: from an unauthenticated header, so memory is not spent on it until a tag has verified.
_POOL = 3


class _Pump:
    """The two threads' shared state; either thread stops at its next step after ``stop``."""

    def __init__(
        self, source: FdReader, codec: Codec, sink: FdSink, progress: Progress | None
    ) -> None:
        self.source, self.codec, self.sink = source, codec, sink
        self.progress = progress
        self.free: queue.SimpleQueue[bytearray | None] = queue.SimpleQueue()
        self.ready: queue.SimpleQueue[tuple[bytearray, int] | BaseException | None] = (
            queue.SimpleQueue()
        )
        self.stopped = threading.Event()
        #: How many segment buffers exist (1 until segment 0 has been processed).
        self.allocated = 1
        self.free.put(self._new_buffer())

    def _new_buffer(self) -> bytearray:
        return bytearray(self.codec.unit + BLOCK)

    def read_all(self) -> None:
        """Fill buffers until the input ends (the reader thread)."""
        unit = self.codec.unit
        try:
            while (buf := self.free.get()) is not None and not self.stopped.is_set():
                n = self.source.fill_into(memoryview(buf), unit)
                self.ready.put((buf, n))
                if n < unit:
                    return
        except BaseException as exc:  # raised by the writer thread, in order
            self.ready.put(exc)
        finally:
            self.source.close()

    def write_all(self) -> None:
        """Run each filled buffer through the codec and write it, in order (the writer)."""
        unit = self.codec.unit
        while (item := self.ready.get()) is not None and not self.stopped.is_set():
            if isinstance(item, BaseException):
                raise item
            buf, n = item
            self.sink.write_buffers(self.codec.process(memoryview(buf), n, n < unit))
            if self.progress is not None:
                self.progress(n)
            self.free.put(buf)
            if n < unit:
                return
            while self.allocated < _POOL:  # segment 0 passed the codec: now overlap
                self.allocated += 1
                self.free.put(self._new_buffer())

    def stop(self) -> None:
        self.stopped.set()
        self.source.stop()
        self.ready.put(None)
        self.free.put(None)


async def pump(
    source: FdSource, codec: Codec, sink: FdSink, progress: Progress | None = None
) -> None:
    """Run everything from ``source`` through ``codec`` into ``sink``."""
    loop = asyncio.get_running_loop()
    state = _Pump(source.reader(), codec, sink, from_worker(progress))
    reading = loop.run_in_executor(None, state.read_all)
    try:
        await wait_for_worker(loop.run_in_executor(None, state.write_all), state.stop)
    finally:
        state.stop()
        await wait_for_worker(reading)  # woken by stop(), even on a pipe that never ends


def accepts_fd(codec: Codec, source: FdSource) -> bool:
    """Whether ``codec``'s cipher pulls input from ``source`` itself (splice, sendfile).

    Only for encryption and raw mode: opening must see each frame and tag first.
    """
    cipher = codec.cipher
    return (
        not isinstance(codec, OpenCodec)
        and isinstance(cipher, FdCipherStream)
        and cipher.accepts_fd(source.fd)
    )


async def pump_from_fd(
    source: FdSource, codec: Codec, sink: FdSink, progress: Progress | None = None
) -> None:
    """Encrypt (or raw-cipher) ``source`` with a cipher that reads the fd itself."""
    cipher = codec.cipher
    assert isinstance(cipher, FdCipherStream)
    seal = codec.seal if isinstance(codec, SealCodec) else None
    unit = codec.unit
    stopped = threading.Event()
    report = from_worker(progress)

    def emit(pending: bytearray, final: bool) -> None:
        """Write the whole segments in ``pending``, and the rest as the last if ``final``."""
        if seal is None:
            if pending:
                sink.write_buffers([bytes(pending)])
                pending.clear()
            return
        while len(pending) >= unit:  # a whole segment is never the last one
            sink.write_buffers(seal(bytes(pending[:unit]), False))
            del pending[:unit]
        if final:
            sink.write_buffers(seal(bytes(pending), True))
            pending.clear()

    def run() -> None:
        pending = bytearray()
        while not stopped.is_set():
            with io_errors("read", source.name):
                out, consumed = cipher.update_from_fd(source.fd, unit)
            if consumed == 0:
                break
            pending += out
            emit(pending, final=False)
            if report is not None:
                report(consumed)
        else:
            return
        pending += cipher.finalize()
        emit(pending, final=True)

    future = asyncio.get_running_loop().run_in_executor(None, run)
    await wait_for_worker(future, stopped.set)
