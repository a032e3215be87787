"""Parallel ranges: byte-identical to the sequential path, same errors, same guarantees."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from kstream.auth import derive_mac
from kstream.parallel import encrypt_file_parallel, split_ranges
from kstream.pipeline import IterSource
from reference import ctr
from streams import Collect, one

import kstream
from kstream.api import decrypt_to, encrypt_to, open_cipher
from kstream.backends.base import CipherStream
from kstream.errors import FormatError, IntegrityError
from kstream.format import DEFAULT_SEGMENT as S
from kstream.format import HEADER_SIZE, Header
from kstream.keys import Key

SIZES = [0, 1, 17, S - 1, S, S + 1, 2 * S, 3 * S + 5]


def test_split_ranges() -> None:
    assert split_ranges(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert split_ranges(2, 8) == [(0, 1), (1, 2)]
    assert split_ranges(0, 4) == [(0, 0)]


async def sequential(key: Key, data: bytes, iv: bytes, raw: bool) -> bytes:
    sink = Collect()
    if raw:
        await encrypt_to(IterSource(one(data)), sink, key=key, raw=True, iv=iv,
                         backend="openssl")
    else:
        await encrypt_to(IterSource(one(data)), sink, key=key, header_iv=iv, backend="openssl")
    return bytes(sink.data)


@pytest.mark.parametrize("raw", [False, True], ids=["auth", "raw"])
@pytest.mark.parametrize("jobs", [1, 2, 3])
@pytest.mark.parametrize("size", SIZES)
async def test_parallel_equals_sequential(tmp_path: Path, size: int, jobs: int,
                                          raw: bool) -> None:
    key, iv = Key(os.urandom(24)), os.urandom(16)
    data = os.urandom(size)
    (tmp_path / "p").write_bytes(data)
    header = Header(suite=key.suite, iv=iv)

    def open_stream(counter: bytes) -> CipherStream:
        return open_cipher(key, counter, backend="openssl")

    src = os.open(tmp_path / "p", os.O_RDONLY)
    dst = os.open(tmp_path / "c", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        await encrypt_file_parallel(
            src, dst, size, iv=iv, segment=S, jobs=jobs, open_stream=open_stream,
            mac=None if raw else derive_mac(key.material(), header),
            prefix=b"" if raw else header.encode(), names=("in", "out"))
    finally:
        os.close(src)
        os.close(dst)
    produced = (tmp_path / "c").read_bytes()
    assert produced == await sequential(key, data, iv, raw)
    if raw:
        assert produced == ctr(key.material(), iv, data)


@pytest.mark.parametrize("jobs", [1, 2, 4])
@pytest.mark.parametrize("size", [0, S, 3 * S + 5])
async def test_file_api_round_trip_with_jobs(tmp_path: Path, size: int, jobs: int) -> None:
    key = Key.generate(256)
    data = os.urandom(size)
    (tmp_path / "p").write_bytes(data)
    await kstream.encrypt_file(tmp_path / "p", tmp_path / "c", key=key, jobs=jobs)
    blob = (tmp_path / "c").read_bytes()
    sink = Collect()
    await decrypt_to(IterSource(one(blob)), sink, key=key)  # the sequential reader agrees
    assert bytes(sink.data) == data
    await kstream.decrypt_file(tmp_path / "c", tmp_path / "d", key=key, jobs=jobs)
    assert (tmp_path / "d").read_bytes() == data


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("jobs", [1, 3])
async def test_parallel_decrypt_names_the_first_bad_segment(tmp_path: Path, jobs: int) -> None:
    key = Key.generate()
    (tmp_path / "p").write_bytes(os.urandom(5 * S + 3))
    await kstream.encrypt_file(tmp_path / "p", tmp_path / "c", key=key, jobs=jobs)
    flip(tmp_path / "c", HEADER_SIZE + 4 * (S + 20) + 50)  # segment 4
    flip(tmp_path / "c", HEADER_SIZE + 2 * (S + 20) + 50)  # segment 2
    with pytest.raises(IntegrityError, match=r"\(segment 2\)$"):
        await kstream.decrypt_file(tmp_path / "c", tmp_path / "d", key=key, jobs=jobs)
    assert sorted(os.listdir(tmp_path)) == ["c", "p"]


async def test_parallel_decrypt_truncation_and_trailing_data(tmp_path: Path) -> None:
    key = Key.generate()
    (tmp_path / "p").write_bytes(os.urandom(3 * S + 3))
    await kstream.encrypt_file(tmp_path / "p", tmp_path / "c", key=key, jobs=2)
    blob = (tmp_path / "c").read_bytes()
    (tmp_path / "cut").write_bytes(blob[:HEADER_SIZE + 2 * (S + 20)])
    with pytest.raises(FormatError, match="file is truncated"):
        await kstream.decrypt_file(tmp_path / "cut", tmp_path / "d", key=key, jobs=2)
    (tmp_path / "long").write_bytes(blob + blob[HEADER_SIZE:HEADER_SIZE + S + 20])
    with pytest.raises(FormatError, match="trailing data"):
        await kstream.decrypt_file(tmp_path / "long", tmp_path / "d", key=key, jobs=2)
    assert not (tmp_path / "d").exists()


async def test_input_offset_is_respected(tmp_path: Path) -> None:
    """An inherited fd (stdin redirected from a file) may not be at offset 0."""
    key = Key.generate()
    data = os.urandom(2 * S + 9)
    (tmp_path / "p").write_bytes(b"skip me" + data)
    fd = os.open(tmp_path / "p", os.O_RDONLY)
    try:
        os.lseek(fd, 7, os.SEEK_SET)
        await kstream.encrypt_file(fd, tmp_path / "c", key=key, jobs=2)
    finally:
        os.close(fd)
    await kstream.decrypt_file(tmp_path / "c", tmp_path / "d", key=key)
    assert (tmp_path / "d").read_bytes() == data


async def test_cancel_parallel_leaves_nothing(tmp_path: Path) -> None:
    key = Key.generate()
    with open(tmp_path / "big", "wb") as f:
        f.truncate(400 << 20)  # sparse: cheap to make, slow enough to encrypt
    task = asyncio.create_task(kstream.encrypt_file(tmp_path / "big", tmp_path / "c",
                                                    key=key, jobs=2))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert os.listdir(tmp_path) == ["big"]


class BlockwiseStream:
    """Like the kernel backend: no in-place API, and output held back to whole blocks."""

    description = "blockwise test double"

    def __init__(self, key: Key, counter: bytes) -> None:
        self.inner = open_cipher(key, counter, backend="openssl")
        self.pending = bytearray()

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        self.pending += self.inner.update(data)
        n = len(self.pending) // 16 * 16
        out = bytes(self.pending[:n])
        del self.pending[:n]
        return out

    def finalize(self) -> bytes:
        return bytes(self.pending) + self.inner.finalize()

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize("jobs", [1, 3])
@pytest.mark.parametrize("size", [0, 5, S, 2 * S + 7])
async def test_general_path_without_in_place_api(tmp_path: Path, size: int, jobs: int) -> None:
    from kstream.parallel import decrypt_file_parallel

    key, iv = Key(os.urandom(16)), os.urandom(16)
    data = os.urandom(size)
    (tmp_path / "p").write_bytes(data)
    header = Header(suite=key.suite, iv=iv)
    mac = derive_mac(key.material(), header)

    def open_stream(counter: bytes) -> CipherStream:
        return BlockwiseStream(key, counter)

    def fds(a: str, b: str) -> tuple[int, int]:
        return (os.open(tmp_path / a, os.O_RDONLY),
                os.open(tmp_path / b, os.O_WRONLY | os.O_CREAT, 0o600))

    src, dst = fds("p", "c")
    await encrypt_file_parallel(src, dst, size, iv=iv, segment=S, jobs=jobs,
                                open_stream=open_stream, mac=mac, prefix=header.encode(),
                                names=("in", "out"))
    os.close(src)
    os.close(dst)
    blob = (tmp_path / "c").read_bytes()
    assert blob == await sequential(key, data, iv, raw=False)
    src, dst = fds("c", "d")
    await decrypt_file_parallel(src, dst, len(blob), iv=iv, segment=S, jobs=jobs,
                                open_stream=open_stream, mac=mac, names=("in", "out"))
    os.close(src)
    os.close(dst)
    assert (tmp_path / "d").read_bytes() == data
