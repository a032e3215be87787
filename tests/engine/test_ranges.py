"""kstream.engine.ranges: parallel file ranges, byte for byte what the other drivers make,
with the same errors and guarantees."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from reference import ctr
from streams import Collect, NoInPlaceBackend, one

import kstream
import kstream.segments
from kstream.engine.drive import run, run_ranges_plan
from kstream.engine.fdio import FdSink, FdSource
from kstream.engine.iterate import IterSource
from kstream.engine.plan import Plan, make_plan
from kstream.engine.ranges import Range, plan_ranges, split_ranges
from kstream.errors import FormatError, IntegrityError, KstreamError
from kstream.format import DEFAULT_SEGMENT as S
from kstream.format import HEADER_SIZE, Header
from kstream.keys.key import Key

SIZES = [0, 1, 17, S - 1, S, S + 1, 2 * S, 3 * S + 5]


def test_split_ranges() -> None:
    assert split_ranges(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert split_ranges(2, 8) == [(0, 1), (1, 2)]
    assert split_ranges(0, 4) == [(0, 0)]


def test_plan_ranges_places_segments_where_the_stream_puts_them() -> None:
    """Decrypting 3 segments (the last of 5 bytes) in 2 ranges: framed input from after the
    header, plaintext output from 0."""
    framed = S + 20
    size = 2 * framed + 25
    assert plan_ranges(3, 2, framed, S, size, 100, 0) == [
        Range(0, 2, 100, 100 + 2 * framed, 0),
        Range(2, 1, 100 + 2 * framed, 100 + size, 2 * S),
    ]


def plan_for(key: Key, iv: bytes, raw: bool, encrypt: bool = True) -> Plan:
    return make_plan(
        encrypt=encrypt,
        key=key,
        raw_iv=iv if raw else None,
        header=None if raw else Header(suite=key.suite, iv=iv),
        backend="openssl",
        notify=print,
    )


async def sequential(plan: Plan, data: bytes) -> bytes:
    sink = Collect()
    await run(plan, IterSource(one(data)), sink)
    return bytes(sink.data)


async def by_ranges(plan: Plan, src: Path, dst: Path, jobs: int, base: int = 0) -> bool:
    i = os.open(src, os.O_RDONLY)
    o = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        size = os.fstat(i).st_size - base
        return await run_ranges_plan(plan, FdSource(i, "in"), FdSink(o, "out"), size, base, jobs)
    finally:
        os.close(i)
        os.close(o)


@pytest.mark.parametrize("raw", [False, True], ids=["auth", "raw"])
@pytest.mark.parametrize("jobs", [1, 2, 3])
@pytest.mark.parametrize("size", SIZES)
async def test_parallel_equals_sequential(tmp_path: Path, size: int, jobs: int, raw: bool) -> None:
    key, iv = Key(os.urandom(24)), os.urandom(16)
    data = os.urandom(size)
    (tmp_path / "p").write_bytes(data)
    assert await by_ranges(plan_for(key, iv, raw), tmp_path / "p", tmp_path / "c", jobs)
    produced = (tmp_path / "c").read_bytes()
    assert produced == await sequential(plan_for(key, iv, raw), data)
    if raw:
        assert produced == ctr(key.material(), iv, data)
    assert await by_ranges(
        plan_for(key, iv, raw, encrypt=False), tmp_path / "c", tmp_path / "d", jobs
    )
    assert (tmp_path / "d").read_bytes() == data


@pytest.mark.parametrize("jobs", [1, 2, 4])
@pytest.mark.parametrize("size", [0, S, 3 * S + 5])
async def test_file_api_round_trip_with_jobs(tmp_path: Path, size: int, jobs: int) -> None:
    key = Key.generate(256)
    data = os.urandom(size)
    (tmp_path / "p").write_bytes(data)
    await kstream.encrypt_file(tmp_path / "p", tmp_path / "c", key=key, jobs=jobs)
    blob = (tmp_path / "c").read_bytes()
    out = b"".join([p async for p in kstream.decrypt_stream(one(blob), key=key)])
    assert out == data  # the sequential reader agrees
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
    first = HEADER_SIZE + 2 * (S + 20)
    with pytest.raises(IntegrityError) as info:
        await kstream.decrypt_file(tmp_path / "c", tmp_path / "d", key=key, jobs=jobs)
    # Segment 0 verified (in the first range; the others wait for it), so the key is right.
    assert str(info.value) == (
        f"authentication failed: the file was modified at segment 2 (bytes {first} to "
        f"{first + S + 19} of the file); the key is right: segment 0 verified with it"
    )
    assert sorted(os.listdir(tmp_path)) == ["c", "p"]


async def sequential_error(key: Key, blob: bytes) -> str:
    with pytest.raises(KstreamError) as info:
        async for _ in kstream.decrypt_stream(one(blob), key=key, backend="openssl"):
            pass
    return str(info.value)


async def test_parallel_decrypt_truncation_and_trailing_data(tmp_path: Path) -> None:
    """Whether the damaged size still fits an intact file (ranges run) or not (the stream
    driver takes over), the message is the one the sequential reader gives."""
    key = Key.generate()
    (tmp_path / "p").write_bytes(os.urandom(3 * S + 3))
    await kstream.encrypt_file(tmp_path / "p", tmp_path / "c", key=key, jobs=2)
    blob = (tmp_path / "c").read_bytes()
    framed = S + 20
    cases = {
        "at a boundary": blob[: HEADER_SIZE + 2 * framed],
        "in the last": blob[:-1],
        "in a middle": blob[: HEADER_SIZE + framed + framed - 5],
        "one byte more": blob + b"x",
        "a segment more": blob + blob[HEADER_SIZE : HEADER_SIZE + framed],
        "header only": blob[:HEADER_SIZE],
    }
    for name, damaged in cases.items():
        (tmp_path / "bad").write_bytes(damaged)
        expected = await sequential_error(key, damaged)
        assert expected.startswith(("file is truncated", "trailing data")), (name, expected)
        with pytest.raises(FormatError) as info:
            await kstream.decrypt_file(
                tmp_path / "bad", tmp_path / "d", key=key, jobs=2, backend="openssl"
            )
        assert str(info.value) == expected, name
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
    (tmp_path / "c2").write_bytes(b"xx" + (tmp_path / "c").read_bytes())
    fd = os.open(tmp_path / "c2", os.O_RDONLY)
    try:
        os.lseek(fd, 2, os.SEEK_SET)
        await kstream.decrypt_file(fd, tmp_path / "d2", key=key, jobs=2)
    finally:
        os.close(fd)
    assert (tmp_path / "d2").read_bytes() == data


async def test_cancel_parallel_leaves_nothing(tmp_path: Path) -> None:
    key = Key.generate()
    with open(tmp_path / "big", "wb") as f:
        f.truncate(16 << 30)  # sparse: cheap to make, far too long to finish before cancel
    started = asyncio.Event()
    task = asyncio.create_task(
        kstream.encrypt_file(
            tmp_path / "big", tmp_path / "c", key=key, jobs=2, progress=lambda n: started.set()
        )
    )
    await asyncio.wait_for(started.wait(), 30)  # output is being written: a partial file
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert os.listdir(tmp_path) == ["big"]


@pytest.mark.parametrize("jobs", [1, 3])
@pytest.mark.parametrize("size", [0, 5, S, 2 * S + 7])
async def test_general_path_without_in_place_api(tmp_path: Path, size: int, jobs: int) -> None:
    """A cipher without update_into that holds back partial blocks (like the kernel's): each
    range opens its own stream from the one backend object, same bytes as OpenSSL in place."""
    key, iv = Key(os.urandom(16)), os.urandom(16)
    data = os.urandom(size)
    (tmp_path / "p").write_bytes(data)
    backend = NoInPlaceBackend(blockwise=True)
    seal_plan = plan_for(key, iv, raw=False)._replace(backend=backend)
    assert await by_ranges(seal_plan, tmp_path / "p", tmp_path / "c", jobs)
    blob = (tmp_path / "c").read_bytes()
    assert blob == await sequential(plan_for(key, iv, raw=False), data)
    open_plan = plan_for(key, iv, raw=False, encrypt=False)._replace(backend=backend)
    assert await by_ranges(open_plan, tmp_path / "c", tmp_path / "d", jobs)
    assert (tmp_path / "d").read_bytes() == data
    segments = size // S + 1
    assert backend.opened == 2 * min(jobs, segments)


async def test_other_ranges_start_only_after_segment_0_verified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A forged segment 0 (wrong key here) stops the run before any other range has opened
    a codec or allocated its segment buffer: memory sized by an unauthenticated header is
    one segment, whatever --jobs says."""
    key = Key.generate()
    (tmp_path / "p").write_bytes(os.urandom(6 * S))
    await kstream.encrypt_file(tmp_path / "p", tmp_path / "c", key=key, jobs=1)
    header = Header.parse((tmp_path / "c").read_bytes()[:HEADER_SIZE])
    plan = make_plan(
        encrypt=False,
        key=Key.generate(),
        raw_iv=None,
        header=header,
        backend="openssl",
        notify=lambda _: None,
    )
    opened: list[int] = []
    make_codec = Plan.codec

    def codec(self: Plan, first: int = 0) -> kstream.segments.Codec:
        opened.append(first)
        return make_codec(self, first)

    monkeypatch.setattr(Plan, "codec", codec)
    size = (tmp_path / "c").stat().st_size
    in_fd = os.open(tmp_path / "c", os.O_RDONLY)
    out_fd = os.open(tmp_path / "d", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with pytest.raises(IntegrityError, match=r"\(segment 0\)$"):
            await run_ranges_plan(plan, FdSource(in_fd, "c"), FdSink(out_fd, "d"), size, 0, 4)
    finally:
        os.close(in_fd)
        os.close(out_fd)
    assert opened == [0]
