"""The in-place pump: two worker threads around reused buffers, driven from the loop."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest
from kstream.inplace import RawTransform, pump_in_place
from kstream.pipeline import BATCH, FdSink, FdSource
from reference import ctr

from kstream.backends.openssl import OpenSSLStream
from kstream.errors import IOFailure

KEY, IV = bytes(range(16)), bytes(16)


class Counting(RawTransform):
    """Raw CTR that records each batch it processes (and from which thread)."""

    def __init__(self) -> None:
        super().__init__(OpenSSLStream(KEY, IV), BATCH)
        self.calls = 0

    def process(self, view: memoryview, n: int, final: bool) -> list[bytes | memoryview]:
        self.calls += 1
        return super().process(view, n, final)


async def test_pump_encrypts_a_pipe_and_reports_progress_on_the_loop() -> None:
    data = os.urandom(3 * BATCH + 1234)
    r, w = os.pipe()
    out_r, out_w = os.pipe()
    loop_thread = threading.get_ident()
    seen: list[tuple[int, int]] = []

    def feed() -> None:
        for i in range(0, len(data), 100_000):
            os.write(w, data[i:i + 100_000])
        os.close(w)

    def drain() -> bytes:
        chunks = []
        while chunk := os.read(out_r, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)

    loop = asyncio.get_running_loop()
    feeder = loop.run_in_executor(None, feed)
    drained = loop.run_in_executor(None, drain)
    transform = Counting()
    await pump_in_place(FdSource(r, "pipe"), transform, FdSink(out_w, "out"),
                        lambda n: seen.append((n, threading.get_ident())))
    os.close(out_w)
    await feeder
    assert await drained == ctr(KEY, IV, data)
    assert transform.calls == 4
    assert sum(n for n, _ in seen) == len(data)
    assert {t for _, t in seen} == {loop_thread}
    os.close(r)
    os.close(out_r)


async def test_cancelling_stops_the_writer_before_the_next_batch() -> None:
    r, w = os.pipe()
    sink = os.open(os.devnull, os.O_WRONLY)
    transform = Counting()
    source = FdSource(r, "pipe")  # widens the pipe to hold a whole batch
    os.write(w, bytes(BATCH))  # one batch, then the input stalls
    task = asyncio.create_task(pump_in_place(source, transform, FdSink(sink, "null")))
    for _ in range(200):
        if transform.calls:
            break
        await asyncio.sleep(0.01)
    assert transform.calls == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # More input arrives after the cancellation: nobody may cipher it any more.
    os.write(w, bytes(BATCH))
    os.close(w)
    await asyncio.sleep(0.2)
    assert transform.calls == 1
    for fd in (r, sink):
        os.close(fd)


async def test_a_read_error_reaches_the_caller() -> None:
    fd = os.open("/", os.O_RDONLY)
    sink = os.open(os.devnull, os.O_WRONLY)
    try:
        with pytest.raises(IOFailure, match="cannot read dir: Is a directory"):
            await pump_in_place(FdSource(fd, "dir"), Counting(), FdSink(sink, "null"))
    finally:
        os.close(fd)
        os.close(sink)


async def test_a_write_error_reaches_the_caller_and_stops_the_cipher() -> None:
    src = os.open("/dev/zero", os.O_RDONLY)  # endless input
    out_r, out_w = os.pipe()
    os.close(out_r)  # nobody reads: EPIPE
    transform = Counting()
    with pytest.raises(BrokenPipeError):
        await asyncio.wait_for(pump_in_place(FdSource(src, "zero"), transform,
                                             FdSink(out_w, "out")), 10)
    await asyncio.sleep(0.2)
    assert transform.calls == 1  # the writer stopped at the error; nothing more ciphered
    os.close(src)
    os.close(out_w)
