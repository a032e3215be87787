"""Pipeline building blocks: batch filling, adapters, error propagation, bounded memory."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
from kstream.pipeline import (
    BATCH,
    SMALL_PIECE,
    FdSink,
    FdSource,
    IterSource,
    coalesce,
    pump,
    read_exact,
)

from kstream.backends.openssl import OpenSSLBackend
from kstream.errors import IOFailure
from kstream.keys import Key


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


async def _pieces(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_read_parts_gives_exact_batches_without_copying_large_pieces() -> None:
    mib = [os.urandom(1 << 20) for _ in range(3)]
    source = IterSource(_pieces(mib))
    n = 1_000_000
    seen = []
    while True:
        parts, got = await source.read_parts(n)
        assert got == sum(len(p) for p in parts)
        seen.append((parts, got))
        if got < n:
            break
    assert [got for _, got in seen] == [n, n, n, 3 * (1 << 20) - 3 * n]
    assert b"".join(b"".join(parts) for parts, _ in seen) == b"".join(mib)
    # The second batch straddles the first two pieces: two views of the caller's objects.
    second = seen[1][0]
    assert len(second) == 2
    assert all(isinstance(p, memoryview) for p in second)
    assert second[0].obj is mib[0] and second[1].obj is mib[1]


async def test_read_parts_joins_runs_of_small_pieces() -> None:
    small = [bytes([i]) * 100 for i in range(50)]
    big = os.urandom(SMALL_PIECE)
    source = IterSource(_pieces([*small[:20], big, *small[20:]]))
    parts, got = await source.read_parts(10**6)
    assert got == 5000 + SMALL_PIECE
    assert [len(p) for p in parts] == [2000, SMALL_PIECE, 3000]
    assert b"".join(parts) == b"".join([*small[:20], big, *small[20:]])
    assert await source.read_parts(10) == ([], 0)


async def test_iter_source_copies_a_bytearray_the_caller_may_reuse() -> None:
    buf = bytearray(b"first")

    async def reuse() -> AsyncIterator[bytearray]:
        yield buf
        buf[:] = b"later"
        yield buf

    source = IterSource(reuse())
    parts, _ = await source.read_parts(5)
    rest, _ = await source.read_parts(5)
    assert bytes(parts[0]) == b"first" and bytes(rest[0]) == b"later"


def test_coalesce_keeps_large_pieces_and_joins_small_runs() -> None:
    views = [memoryview(x) for x in (b"a", b"bb", b"large!", b"c", b"large2", b"d", b"e")]
    assert [bytes(p) for p in coalesce(views, 4)] == [b"abb", b"large!", b"c", b"large2", b"de"]
    assert coalesce(views[2:3], 4)[0] is views[2]  # a large piece is passed on, not copied
    assert coalesce([], 4) == []
