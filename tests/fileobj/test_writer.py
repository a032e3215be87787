"""kstream.open(..., "wb"): the bytes encrypt writes, in any pieces; atomic paths."""

from __future__ import annotations

import asyncio
import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import seal, seal_with_passphrase, split
from sealed import PASSPHRASE, WORK_FACTOR, S

import kstream
from kstream.atomic import PARTIAL_SUFFIX
from kstream.errors import UsageError
from kstream.format import DEFAULT_SEGMENT, HEADER_SIZE, Header


@settings(max_examples=60, deadline=None)
@given(
    plain=st.binary(max_size=6 * S + 3)
    | st.integers(0, 5).map(lambda n: bytes(range(64)) * n),  # whole segments
    cuts=st.lists(st.integers(0, 1000), max_size=8),
    bits=st.sampled_from([128, 192, 256]),
)
def test_any_writes_give_the_file_encrypt_writes(plain: bytes, cuts: list[int], bits: int) -> None:
    key = kstream.Key.generate(bits)
    out = io.BytesIO()
    with kstream.open(out, "wb", key=key, segment_size=S, backend="openssl") as f:
        for piece in split(plain, cuts):
            assert f.write(memoryview(piece)) == len(piece)
        assert f.tell() == len(plain)
    blob = out.getvalue()
    header = Header.parse(blob)
    assert (header.suite.key_size, header.auth_param) == (bits // 8, S)
    # the reference, from the README's format alone, seals the same bytes under that header
    assert blob == seal(key.material(), blob[:HEADER_SIZE], plain, S)
    with kstream.open(io.BytesIO(blob), key=key) as back:
        assert back.read() == plain


def test_passphrase_and_default_segment(tmp_path: Path) -> None:
    plain = os.urandom(DEFAULT_SEGMENT + 10)
    with kstream.open(
        tmp_path / "p.kst", "wb", passphrase=PASSPHRASE, work_factor=WORK_FACTOR
    ) as f:
        f.write(plain)
    blob = (tmp_path / "p.kst").read_bytes()
    header = Header.parse(blob)
    assert header.kdf is not None and header.kdf.log2n == WORK_FACTOR
    assert header.auth_param == DEFAULT_SEGMENT
    assert blob == seal_with_passphrase(PASSPHRASE, blob[: header.size], plain, DEFAULT_SEGMENT)


async def test_decrypt_reads_what_the_writer_wrote(tmp_path: Path, key_file: Path) -> None:
    plain = os.urandom(3 * S + 1)
    with kstream.open(tmp_path / "c.kst", "wb", key_file=key_file, segment_size=S) as f:
        f.write(plain)
    await kstream.decrypt_file(
        tmp_path / "c.kst", tmp_path / "d", key=kstream.Key.from_file(key_file)
    )
    assert (tmp_path / "d").read_bytes() == plain


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(PARTIAL_SUFFIX)]


def test_a_path_appears_whole_on_close_and_never_after_an_exception(
    tmp_path: Path, key_file: Path
) -> None:
    target = tmp_path / "out.kst"
    f = kstream.open(target, "wb", key_file=key_file, segment_size=S)
    f.write(b"x" * 1000)
    assert not target.exists() and len(leftovers(tmp_path)) == 1
    f.close()
    assert target.exists() and not leftovers(tmp_path)
    assert oct(target.stat().st_mode & 0o777) == "0o600"

    other = tmp_path / "failed.kst"
    with pytest.raises(RuntimeError), kstream.open(other, "wb", key_file=key_file) as g:
        g.write(b"y" * 100)
        raise RuntimeError("the producer failed")
    assert not other.exists() and not leftovers(tmp_path)
    assert g.closed

    dropped = kstream.open(tmp_path / "dropped.kst", "wb", key_file=key_file)
    dropped.write(b"z")
    del dropped  # never closed: a file cut anywhere must not appear
    assert not (tmp_path / "dropped.kst").exists() and not leftovers(tmp_path)


def test_an_existing_path_needs_force(tmp_path: Path, key_file: Path) -> None:
    target = tmp_path / "out.kst"
    target.write_bytes(b"keep me")
    with pytest.raises(UsageError, match="already exists"):
        kstream.open(target, "wb", key_file=key_file)
    assert target.read_bytes() == b"keep me" and not leftovers(tmp_path)
    with kstream.open(target, "wb", key_file=key_file, force=True) as f:
        f.write(b"new")
        assert target.read_bytes() == b"keep me"  # replaced only when complete
    with kstream.open(target, key_file=key_file) as back:
        assert back.read() == b"new"


def test_what_a_writer_refuses(tmp_path: Path, key_file: Path) -> None:
    with kstream.open(io.BytesIO(), "wb", key_file=key_file) as f:
        assert f.writable() and not f.readable() and not f.seekable()
        with pytest.raises(io.UnsupportedOperation):
            f.seek(0)
        with pytest.raises(io.UnsupportedOperation):
            f.read()
        assert "bytes written" in repr(f) and "BytesIO" in repr(f)
    with pytest.raises(ValueError, match="closed file"):
        f.write(b"late")
    with pytest.raises(UsageError, match="segment_size must be a multiple of 16"):
        kstream.open(io.BytesIO(), "wb", key_file=key_file, segment_size=100)
    with pytest.raises(UsageError, match="cannot write to"):
        kstream.open(object(), "wb", key_file=key_file)


class Failing(io.RawIOBase):
    """Takes the header, then fails: a full disk."""

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        if len(memoryview(data)) != HEADER_SIZE:  # type: ignore[arg-type]
            raise OSError(28, "No space left on device")
        return HEADER_SIZE


def test_a_failed_write_fails_every_later_one(key_file: Path) -> None:
    f = kstream.open(Failing(), "wb", key_file=key_file, segment_size=S)
    with pytest.raises(kstream.IOFailure, match="^cannot write output <Failing>: No space left"):
        f.write(b"x" * (S + 1))
    with pytest.raises(ValueError, match="an earlier write failed"):
        f.write(b"y")
    f.close()
    assert f.closed


def test_zipfile_streams_into_it_and_reads_back_one_member(tmp_path: Path, key_file: Path) -> None:
    members = {f"m{i}.bin": os.urandom(2000 + i * 300) for i in range(8)}
    with (
        kstream.open(tmp_path / "a.zip.kst", "wb", key_file=key_file, segment_size=256) as f,
        zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as archive,
    ):
        for name, data in members.items():
            archive.writestr(name, data)
    with (
        kstream.open(tmp_path / "a.zip.kst", key_file=key_file) as reader,
        zipfile.ZipFile(reader) as archive,
    ):
        assert archive.read("m5.bin") == members["m5.bin"]
        # the directory at the end and one member of 3.5 KB (deflated: random data stays
        # as large): not the whole 25 KB archive
        assert reader.segments_decrypted < 25
        assert archive.testzip() is None
        assert {n: archive.read(n) for n in archive.namelist()} == members


def test_tarfile_writes_and_reads_with_random_access(tmp_path: Path, key_file: Path) -> None:
    files = {f"f{i}": os.urandom(5000 * i + 7) for i in range(1, 6)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    with (
        kstream.open(tmp_path / "t.tar.kst", "wb", key_file=key_file, segment_size=1024) as f,
        tarfile.open(fileobj=f, mode="w|") as tar,
    ):
        for name in files:
            tar.add(tmp_path / name, arcname=name)
    with (
        kstream.open(tmp_path / "t.tar.kst", key_file=key_file) as reader,
        tarfile.open(fileobj=reader, mode="r:") as tar,
    ):
        member = tar.getmember("f4")
        extracted = tar.extractfile(member)
        assert extracted is not None and extracted.read() == files["f4"]


async def test_the_async_writer_and_reader(tmp_path: Path, key_file: Path) -> None:
    plain = os.urandom(5 * S + 2)
    async with kstream.open_async(tmp_path / "x.kst", "wb", key_file=key_file, segment_size=S) as f:
        await f.write(plain[:100])
        await f.write(plain[100:])
    f2 = await kstream.open_async(tmp_path / "x.kst", key_file=key_file)
    assert f2.size == len(plain)
    assert await f2.read(10) == plain[:10]
    assert await f2.seek(-3, io.SEEK_END) == len(plain) - 3
    assert await f2.read() == plain[-3:]
    assert await f2.tell() == len(plain)
    parts = await asyncio.gather(*(f2.read_at(i * 7, 7) for i in range(len(plain) // 7)))
    assert b"".join(parts) == plain[: len(plain) // 7 * 7]
    buffer = bytearray(5)
    await f2.seek(1)
    assert await f2.readinto(buffer) == 5 and bytes(buffer) == plain[1:6]
    with pytest.raises(io.UnsupportedOperation):
        await f2.write(b"no")
    await f2.close()
    assert f2.closed

    with pytest.raises(RuntimeError):
        async with kstream.open_async(tmp_path / "y.kst", "wb", key_file=key_file) as g:
            await g.write(b"partial")
            raise RuntimeError("stop")
    assert not (tmp_path / "y.kst").exists() and not leftovers(tmp_path)


def test_pyarrow_and_pandas_write_and_read_parquet_through_it(
    tmp_path: Path, key_file: Path
) -> None:
    pa = pytest.importorskip("pyarrow", reason="pyarrow writes and reads Parquet here")
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow's Parquet module")
    pd = pytest.importorskip("pandas", reason="pandas writes and reads Parquet here")
    table = pa.table(
        {"id": list(range(50_000)), "blob": [os.urandom(40).hex() for _ in range(50_000)]}
    )
    target = tmp_path / "t.parquet.kst"
    with kstream.open(target, "wb", key_file=key_file, segment_size=16 * 1024) as f:
        pq.write_table(table, f, row_group_size=10_000)
    with kstream.open(target, key_file=key_file) as f:
        assert pq.read_table(f).equals(table)
    with kstream.open(target, key_file=key_file) as f:
        ids = pq.read_table(f, columns=["id"])
        assert ids.column("id").to_pylist() == list(range(50_000))
        # one narrow column: a fraction of the file's segments
        total = -(-f.size // f.segment_size)
        assert f.segments_decrypted < total // 4
    frame = table.to_pandas()
    with kstream.open(tmp_path / "p.parquet.kst", "wb", key_file=key_file) as f:
        frame.to_parquet(f)
    with kstream.open(tmp_path / "p.parquet.kst", key_file=key_file) as f:
        pd.testing.assert_frame_equal(pd.read_parquet(f), frame)
