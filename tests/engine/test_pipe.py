"""kstream.engine.pipe: the two-thread fd pump, and the kernel's pull-from-fd loop."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from reference import ctr, seal

from kstream.backends.base import BLOCK
from kstream.backends.openssl import OpenSSLStream
from kstream.engine.fdio import FdSink, FdSource
from kstream.engine.pipe import accepts_fd, pump, pump_from_fd
from kstream.errors import IOFailure
from kstream.format import DEFAULT_SEGMENT as S
from kstream.format import CipherSuite, Header
from kstream.segments import Buffers, OpenCodec, RawCodec, SealCodec, derive_mac

KEY, IV = bytes(range(16)), bytes(16)
HEADER = Header(suite=CipherSuite.AES_128_CTR, iv=IV)


class Counting(RawCodec):
    """Raw CTR that records each segment it processes."""

    def __init__(self) -> None:
        super().__init__(OpenSSLStream(KEY, IV), S)
        self.calls = 0

    def process(self, view: memoryview, n: int, last: bool) -> Buffers:
        self.calls += 1
        return super().process(view, n, last)


def drain(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


async def test_pump_encrypts_a_pipe_and_reports_progress_on_the_loop() -> None:
    data = os.urandom(3 * S + 1234)
    r, w = os.pipe()
    out_r, out_w = os.pipe()
    loop_thread = threading.get_ident()
    seen: list[tuple[int, int]] = []

    def feed() -> None:
        for i in range(0, len(data), 100_000):
            os.write(w, data[i : i + 100_000])
        os.close(w)

    loop = asyncio.get_running_loop()
    feeder = loop.run_in_executor(None, feed)
    drained = loop.run_in_executor(None, drain, out_r)
    codec = Counting()
    await pump(
        FdSource(r, "pipe"),
        codec,
        FdSink(out_w, "out"),
        lambda n: seen.append((n, threading.get_ident())),
    )
    os.close(out_w)
    await feeder
    assert await drained == ctr(KEY, IV, data)
    assert codec.calls == 4
    await asyncio.sleep(0)  # progress is scheduled on the loop with call_soon_threadsafe
    assert sum(n for n, _ in seen) == len(data)
    assert {t for _, t in seen} == {loop_thread}
    os.close(r)
    os.close(out_r)


async def test_pump_seals_and_opens_files(tmp_path: Path) -> None:
    """Sealing by the pump gives docs/format.md's body; opening it back gives the plaintext."""
    data = os.urandom(2 * S)  # a multiple of S: the final segment is empty
    (tmp_path / "p").write_bytes(data)
    mac = derive_mac(KEY, HEADER)
    for src, dst, codec in (
        ("p", "c", SealCodec(OpenSSLStream(KEY, IV), mac, S)),
        ("c", "d", OpenCodec(OpenSSLStream(KEY, IV), mac, S)),
    ):
        i = os.open(tmp_path / src, os.O_RDONLY)
        o = os.open(tmp_path / dst, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            await pump(FdSource(i, src), codec, FdSink(o, dst))
        finally:
            os.close(i)
            os.close(o)
    assert (tmp_path / "c").read_bytes() == seal(KEY, HEADER.encode(), data, S)[32:]
    assert (tmp_path / "d").read_bytes() == data


async def test_cancelling_stops_the_writer_before_the_next_segment() -> None:
    r, w = os.pipe()
    sink = os.open(os.devnull, os.O_WRONLY)
    codec = Counting()
    source = FdSource(r, "pipe")  # widens the pipe to hold a whole segment
    os.write(w, bytes(S))  # one segment, then the input stalls
    task = asyncio.create_task(pump(source, codec, FdSink(sink, "null")))
    for _ in range(200):
        if codec.calls:
            break
        await asyncio.sleep(0.01)
    assert codec.calls == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # More input arrives after the cancellation: nobody may cipher it any more.
    os.write(w, bytes(S))
    os.close(w)
    await asyncio.sleep(0.2)
    assert codec.calls == 1
    for fd in (r, sink):
        os.close(fd)


async def test_a_read_error_reaches_the_caller() -> None:
    fd = os.open("/", os.O_RDONLY)
    sink = os.open(os.devnull, os.O_WRONLY)
    try:
        with pytest.raises(IOFailure, match="^cannot read dir: Is a directory$"):
            await pump(FdSource(fd, "dir"), Counting(), FdSink(sink, "null"))
    finally:
        os.close(fd)
        os.close(sink)


async def test_a_write_error_reaches_the_caller_and_stops_the_cipher() -> None:
    src = os.open("/dev/zero", os.O_RDONLY)  # endless input
    full = os.open("/dev/full", os.O_WRONLY)  # every write: ENOSPC
    codec = Counting()
    with pytest.raises(IOFailure, match="^cannot write out: No space left on device$"):
        await asyncio.wait_for(pump(FdSource(src, "zero"), codec, FdSink(full, "out")), 10)
    await asyncio.sleep(0.2)
    assert codec.calls == 1  # the writer stopped at the error; nothing more ciphered
    os.close(src)
    os.close(full)


async def test_a_broken_pipe_reaches_the_caller_and_stops_the_cipher() -> None:
    src = os.open("/dev/zero", os.O_RDONLY)
    out_r, out_w = os.pipe()
    os.close(out_r)  # nobody reads: EPIPE
    codec = Counting()
    with pytest.raises(BrokenPipeError):
        await asyncio.wait_for(pump(FdSource(src, "zero"), codec, FdSink(out_w, "out")), 10)
    await asyncio.sleep(0.2)
    assert codec.calls == 1
    os.close(src)
    os.close(out_w)


class PullingStream:
    """An OpenSSL CTR stream that reads its input from an fd itself, as the kernel's splice
    and sendfile paths do; it holds back a partial block until finalize, as they may."""

    description = "pulling test double"

    def __init__(self) -> None:
        self.inner = OpenSSLStream(KEY, IV)
        self.pending = bytearray()

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        return self._whole(self.inner.update(data))

    def _whole(self, out: bytes) -> bytes:
        self.pending += out
        n = len(self.pending) // BLOCK * BLOCK
        done = bytes(self.pending[:n])
        del self.pending[:n]
        return done

    def update_from_fd(self, fd: int, max_bytes: int) -> tuple[bytes, int]:
        data = os.read(fd, min(max_bytes, 100_003))  # odd-sized pulls
        return self._whole(self.inner.update(data)), len(data)

    def accepts_fd(self, fd: int) -> bool:
        return True

    def finalize(self) -> bytes:
        return bytes(self.pending) + self.inner.finalize()

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize("size", [0, 5, S, 2 * S + 7])
async def test_pump_from_fd_gives_the_same_bytes_as_the_pump(tmp_path: Path, size: int) -> None:
    """A cipher that pulls from the fd: its ciphertext is cut into the same segments."""
    data = os.urandom(size)
    (tmp_path / "p").write_bytes(data)
    mac = derive_mac(KEY, HEADER)
    for name, codec in (
        ("sealed", SealCodec(PullingStream(), mac, S)),
        ("raw", RawCodec(PullingStream(), S)),
    ):
        i = os.open(tmp_path / "p", os.O_RDONLY)
        o = os.open(tmp_path / name, os.O_WRONLY | os.O_CREAT, 0o600)
        seen: list[int] = []
        try:
            source = FdSource(i, "p")
            assert accepts_fd(codec, source)
            await pump_from_fd(source, codec, FdSink(o, name), seen.append)
        finally:
            os.close(i)
            os.close(o)
        await asyncio.sleep(0)
        assert sum(seen) == size
    assert (tmp_path / "sealed").read_bytes() == seal(KEY, HEADER.encode(), data, S)[32:]
    assert (tmp_path / "raw").read_bytes() == ctr(KEY, IV, data)


def test_opening_never_pulls_from_the_fd() -> None:
    """An opener must see each frame and tag before deciphering anything."""
    r, w = os.pipe()
    try:
        source = FdSource(r, "in")
        opener = OpenCodec(PullingStream(), derive_mac(KEY, HEADER), S)
        assert not accepts_fd(opener, source)
        assert accepts_fd(RawCodec(PullingStream(), S), source)
        assert not accepts_fd(RawCodec(OpenSSLStream(KEY, IV), S), source)
    finally:
        os.close(r)
        os.close(w)


class RefusesFirst(RawCodec):
    """A codec whose first segment fails, as a forged segment 0 does when decrypting."""

    def __init__(self) -> None:
        super().__init__(OpenSSLStream(KEY, IV), S)

    def process(self, view: memoryview, n: int, last: bool) -> Buffers:
        raise IOFailure("segment 0 refused")


@pytest.mark.parametrize(("codec", "allocated"), [(RefusesFirst, 1), (Counting, 3)])
async def test_pump_holds_one_buffer_until_segment_0_went_through_the_codec(
    tmp_path: Path, codec: Callable[[], RawCodec], allocated: int
) -> None:
    """The segment size comes from an unauthenticated header: no second buffer before
    segment 0 passed (the input has far more than three segments ready to read)."""
    import kstream.engine.pipe as pipe_module

    src = tmp_path / "in"
    src.write_bytes(os.urandom(6 * S))
    made: list[object] = []
    original = pipe_module._Pump._new_buffer

    def counted(self: pipe_module._Pump) -> bytearray:
        made.append(None)
        return original(self)

    fd = os.open(src, os.O_RDONLY)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(pipe_module._Pump, "_new_buffer", counted)
            sink_fd = os.open(os.devnull, os.O_WRONLY)
            try:
                if codec is RefusesFirst:
                    with pytest.raises(IOFailure, match="segment 0 refused"):
                        await pump(FdSource(fd, "in"), codec(), FdSink(sink_fd, "out"))
                else:
                    await pump(FdSource(fd, "in"), codec(), FdSink(sink_fd, "out"))
            finally:
                os.close(sink_fd)
    finally:
        os.close(fd)
    assert len(made) == allocated
