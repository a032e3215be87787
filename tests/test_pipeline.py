"""Pipeline building blocks: batch filling, adapters, error propagation, bounded memory."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from kstream.backends.openssl import OpenSSLBackend
from kstream.errors import IOFailure
from kstream.keys import Key
from kstream.pipeline import BATCH, FdSink, FdSource, IterSource, pump, read_exact


async def test_fd_source_fills_batches_from_a_pipe() -> None:
    r, w = os.pipe()
    data = os.urandom(BATCH + 5)

    def feed() -> None:
        for i in range(0, len(data), 4096):  # many small pipe writes
            os.write(w, data[i:i + 4096])
        os.close(w)

    feeder = asyncio.get_running_loop().run_in_executor(None, feed)
    source = FdSource(r, "pipe")
    first = await source.read(BATCH)
    assert first == data[:BATCH]  # one read, filled completely despite 4 KiB writes
    assert await source.read(BATCH) == data[BATCH:]
    assert await source.read(BATCH) == b""
    await feeder
    os.close(r)


async def test_fd_source_read_error_is_an_io_failure() -> None:
    with pytest.raises(IOFailure, match="cannot read dir: Is a directory"):
        fd = os.open("/", os.O_RDONLY)
        try:
            await FdSource(fd, "dir").read(10)
        finally:
            os.close(fd)


async def test_iter_source_rejects_non_bytes() -> None:
    async def bad() -> AsyncIterator[bytes]:
        yield "text"  # type: ignore[misc]

    with pytest.raises(TypeError, match="yielded str, expected bytes"):
        await IterSource(bad()).read(10)


async def test_read_exact_stops_only_at_eof() -> None:
    async def pieces() -> AsyncIterator[bytes]:
        for p in (b"ab", b"c", b"defg"):
            yield p

    source = IterSource(pieces())
    assert await read_exact(source, 5) == b"abcde"
    assert await read_exact(source, 5) == b"fg"


async def test_pump_writer_error_stops_everything() -> None:
    class Broken:
        async def write(self, data: bytes) -> None:
            raise IOFailure("cannot write sink: No space left on device")

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield bytes(BATCH)

    stream = OpenSSLBackend().open(Key(bytes(16)), bytes(16))
    with pytest.raises(IOFailure, match="No space left"):
        await asyncio.wait_for(pump(IterSource(endless()), stream, Broken()), 10)


async def test_memory_stays_bounded_for_a_large_stream() -> None:
    """200 MiB through the pipeline while tracking the largest amount of data in flight."""
    total = 200 << 20
    produced = consumed = peak = 0

    async def source() -> AsyncIterator[bytes]:
        nonlocal produced, peak
        block = bytes(BATCH)
        while produced < total:
            produced += BATCH
            peak = max(peak, produced - consumed)
            yield block

    class Counter:
        async def write(self, data: bytes) -> None:
            nonlocal consumed
            consumed += len(data)

    stream = OpenSSLBackend().open(Key(bytes(16)), bytes(16))
    written = await pump(IterSource(source()), stream, Counter())
    assert written == consumed == produced
    assert peak <= 8 * BATCH  # a few batches in flight, never the whole input


async def test_fd_sink_handles_broken_pipe() -> None:
    r, w = os.pipe()
    os.close(r)
    with pytest.raises(BrokenPipeError):
        await FdSink(w, "stdout").write(b"x")
    os.close(w)


def test_pipes_are_widened_to_one_batch() -> None:
    import fcntl

    with open("/proc/sys/fs/pipe-max-size") as f:
        if int(f.read()) < BATCH and os.geteuid() != 0:
            pytest.skip("pipe-max-size is below one batch and we are not root")

    r, w = os.pipe()
    try:
        FdSource(r, "in")
        assert fcntl.fcntl(r, fcntl.F_GETPIPE_SZ) >= BATCH
        FdSink(w, "out")  # the same pipe: no error, still wide
        assert fcntl.fcntl(w, fcntl.F_GETPIPE_SZ) >= BATCH
    finally:
        os.close(r)
        os.close(w)


def test_malloc_tuning_is_applied_once_on_glibc() -> None:
    import platform

    from kstream.memory import tune_malloc

    applied = tune_malloc()
    assert applied == (platform.libc_ver()[0] == "glibc")
    assert tune_malloc() == applied
