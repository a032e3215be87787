"""kstream.engine.iterate: async sources, exact segments without copying large pieces, the
read-ahead stage, and the iterate driver (errors in order, bounded memory)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import pytest
from reference import ctr, seal
from streams import NoInPlace, each

from kstream.backends.openssl import OpenSSLStream
from kstream.engine.iterate import (
    SMALL_PIECE,
    AsyncFileSource,
    IterSource,
    coalesce,
    iterate,
    read_ahead,
    read_exact,
)
from kstream.errors import IOFailure
from kstream.format import DEFAULT_SEGMENT as S
from kstream.format import CipherSuite, Header
from kstream.segments import RawCodec, SealCodec, derive_mac

KEY, IV = bytes(range(16)), bytes(16)


async def test_iter_source_rejects_non_bytes() -> None:
    async def bad() -> AsyncIterator[bytes]:
        yield "text"  # type: ignore[misc]

    with pytest.raises(TypeError, match="yielded str, expected bytes"):
        await IterSource(bad()).read_pieces(10)


async def test_read_exact_stops_only_at_eof() -> None:
    source = IterSource(each([b"ab", b"c", b"defg"]))
    assert await read_exact(source, 5) == b"abcde"
    assert await read_exact(source, 5) == b"fg"
    assert await read_exact(source, 5) == b""


async def test_stream_reader_is_a_source() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"hello ")
    reader.feed_data(b"world")
    reader.feed_eof()
    assert await read_exact(IterSource(reader), 100) == b"hello world"


async def test_async_file_source_reads_until_n_or_eof() -> None:
    class Dribble:
        """An async file that returns at most 3 bytes per read."""

        def __init__(self, data: bytes) -> None:
            self.data = data

        async def read(self, n: int) -> bytes:
            out, self.data = self.data[: min(n, 3)], self.data[min(n, 3) :]
            return out

    source = AsyncFileSource(Dribble(b"0123456789"))
    parts, n = await source.read_pieces(8)
    assert (b"".join(parts), n) == (b"01234567", 8)
    assert await source.read_pieces(8) == ([b"89"], 2)
    assert await source.read_pieces(8) == ([], 0)


async def test_read_parts_gives_exact_segments_without_copying_large_pieces() -> None:
    mib = [os.urandom(1 << 20) for _ in range(3)]
    source = IterSource(each(mib))
    n = 1_000_000
    seen = []
    while True:
        parts, got = await source.read_pieces(n)
        assert got == sum(len(p) for p in parts)
        seen.append((parts, got))
        if got < n:
            break
    assert [got for _, got in seen] == [n, n, n, 3 * (1 << 20) - 3 * n]
    assert b"".join(b"".join(parts) for parts, _ in seen) == b"".join(mib)
    # The second segment straddles the first two pieces: two views of the caller's objects.
    second = seen[1][0]
    assert len(second) == 2
    assert all(isinstance(p, memoryview) for p in second)
    assert second[0].obj is mib[0] and second[1].obj is mib[1]  # type: ignore[union-attr]


async def test_read_parts_joins_runs_of_small_pieces() -> None:
    small = [bytes([i]) * 100 for i in range(50)]
    big = os.urandom(SMALL_PIECE)
    source = IterSource(each([*small[:20], big, *small[20:]]))
    parts, got = await source.read_pieces(10**6)
    assert got == 5000 + SMALL_PIECE
    assert [len(p) for p in parts] == [2000, SMALL_PIECE, 3000]
    assert b"".join(parts) == b"".join([*small[:20], big, *small[20:]])
    assert await source.read_pieces(10) == ([], 0)


async def test_iter_source_copies_a_bytearray_the_caller_may_reuse() -> None:
    buf = bytearray(b"first")

    async def reuse() -> AsyncIterator[bytearray]:
        yield buf
        buf[:] = b"later"
        yield buf

    source = IterSource(reuse())
    parts, _ = await source.read_pieces(5)
    rest, _ = await source.read_pieces(5)
    assert bytes(parts[0]) == b"first" and bytes(rest[0]) == b"later"


def test_coalesce_keeps_large_pieces_and_joins_small_runs() -> None:
    views = [memoryview(x) for x in (b"a", b"bb", b"large!", b"c", b"large2", b"d", b"e")]
    assert [bytes(p) for p in coalesce(views, 4)] == [b"abb", b"large!", b"c", b"large2", b"de"]
    assert coalesce(views[2:3], 4)[0] is views[2]  # a large piece is passed on, not copied
    assert coalesce([], 4) == []


async def test_read_ahead_raises_errors_in_order_after_earlier_results() -> None:
    """Results before a failing item are yielded first; the error then reaches the consumer."""
    items = iter(range(10))

    async def read() -> int:
        return next(items)

    def work(i: int) -> int:
        if i == 3:
            raise IOFailure("cannot read in: Input/output error")
        return i * 10

    got: list[int] = []
    with pytest.raises(IOFailure, match="Input/output error"):
        async for out in read_ahead(read, work, lambda i: i == 9):
            got.append(out)
    assert got == [0, 10, 20]


async def test_iterate_encrypts_pieces_of_any_size_like_the_reference() -> None:
    """Pieces that are not whole blocks (and a cipher without update_into that holds a
    partial block back, as the kernel does) still give docs/format.md's bytes."""
    data = os.urandom(2 * S + 333)
    pieces = [data[i : i + 100_001] for i in range(0, len(data), 100_001)]
    header = Header(suite=CipherSuite.AES_128_CTR, iv=IV)
    for cipher in (OpenSSLStream(KEY, IV), NoInPlace(KEY, IV, blockwise=True)):
        codec = SealCodec(cipher, derive_mac(KEY, header), S)
        body = b"".join([out async for out in iterate(IterSource(each(pieces)), codec)])
        assert header.encode() + body == seal(KEY, header.encode(), data, S)
        raw = RawCodec(NoInPlace(KEY, IV, blockwise=True), S)
        assert b"".join([o async for o in iterate(IterSource(each(pieces)), raw)]) == (
            ctr(KEY, IV, data)
        )


async def test_iterate_progress_counts_every_input_byte() -> None:
    data = os.urandom(S + 7)
    seen: list[int] = []
    codec = RawCodec(OpenSSLStream(KEY, IV), S)
    out = [o async for o in iterate(IterSource(each([data])), codec, seen.append)]
    assert b"".join(out) == ctr(KEY, IV, data)
    assert seen == [S, 7]


async def test_a_consumer_error_stops_the_read_ahead() -> None:
    """A sink that fails (disk full) ends the run: once the driver is closed, its read-ahead
    has stopped, so the source is not read on and the cipher (closed next by the plan) is
    not used any more."""
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        while True:
            pulled += 1
            yield bytes(S)

    cipher = NoInPlace(KEY, IV)
    batches = iterate(IterSource(endless()), RawCodec(cipher, S))
    with pytest.raises(IOFailure, match="No space left"):
        async for _ in batches:
            raise IOFailure("cannot write sink: No space left on device")
    await batches.aclose()
    at_close = (pulled, cipher.updates)
    for _ in range(10):
        await asyncio.sleep(0.02)
    assert (pulled, cipher.updates) == at_close
    assert pulled <= 8


async def test_memory_stays_bounded_for_a_large_stream() -> None:
    """200 MiB through the iterate driver while tracking the most data in flight."""
    total = 200 << 20
    produced = consumed = peak = 0

    async def source() -> AsyncIterator[bytes]:
        nonlocal produced, peak
        block = bytes(S)
        while produced < total:
            produced += S
            peak = max(peak, produced - consumed)
            yield block

    async for out in iterate(IterSource(source()), RawCodec(OpenSSLStream(KEY, IV), S)):
        consumed += len(out)
    assert consumed == produced >= total
    assert peak <= 8 * S  # a few segments in flight, never the whole input


@pytest.mark.kernel
async def test_kernel_stream_encrypts_pieces_that_are_not_whole_blocks() -> None:
    """The real kernel stream holds a partial block back between pieces: encrypt_stream with
    odd-sized pieces (and --verify against OpenSSL) still gives docs/format.md's bytes."""
    import kstream
    from kstream.engine.drive import run_iterable
    from kstream.engine.plan import make_plan

    key = kstream.Key(KEY)
    data = os.urandom(2 * S + 333)
    pieces = [data[i : i + 100_001] for i in range(0, len(data), 100_001)]
    header = Header(suite=CipherSuite.AES_128_CTR, iv=IV)
    for verify in (False, True):
        plan = make_plan(
            encrypt=True,
            key=key,
            raw_iv=None,
            header=header,
            backend="kernel",
            verify=verify,
            notify=print,
        )
        out = b"".join([o async for o in run_iterable(plan, IterSource(each(pieces)))])
        assert out == seal(KEY, header.encode(), data, S)
    back = kstream.decrypt_stream(
        each([out[i : i + 77_777] for i in range(0, len(out), 77_777)]), key=key, backend="kernel"
    )
    assert b"".join([p async for p in back]) == data


async def test_read_ahead_holds_back_until_the_first_item_is_done() -> None:
    """With hold_first nothing after item 0 is read before its work has succeeded; after
    that the reader runs ahead again."""
    reads: list[int] = []
    items = iter(range(6))
    first_work_done = False
    read_before_first_done: list[int] = []

    async def read() -> int:
        i = next(items)
        reads.append(i)
        if not first_work_done:
            read_before_first_done.append(i)
        return i

    def work(i: int) -> int:
        nonlocal first_work_done
        time.sleep(0.05 if i == 0 else 0)
        first_work_done = True
        return i

    got = [out async for out in read_ahead(read, work, lambda i: i == 5, hold_first=True)]
    assert got == list(range(6))
    assert read_before_first_done == [0]


async def test_read_ahead_reads_nothing_more_when_the_first_item_fails() -> None:
    reads: list[int] = []
    items = iter(range(6))

    async def read() -> int:
        reads.append(next(items))
        await asyncio.sleep(0)
        return reads[-1]

    def work(i: int) -> int:
        time.sleep(0.05)
        raise IOFailure("segment 0 refused")

    with pytest.raises(IOFailure, match="segment 0 refused"):
        async for _ in read_ahead(read, work, lambda i: i == 5, hold_first=True):
            pass
    assert reads == [0]
