"""The coroutine API: files, fds, aiofiles objects, async streams, errors, cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiofiles
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import ctr, split, unframe
from streams import one

import kstream
import kstream.engine.plan
from kstream.backends.openssl import OpenSSLStream
from kstream.errors import FormatError, InvalidKey, IOFailure, UsageError
from kstream.format import DEFAULT_SEGMENT, HEADER_SIZE, Header, framed_size

BATCH = DEFAULT_SEGMENT  # what every driver hands a worker thread at once


def body_of(blob: bytes, key: kstream.Key) -> bytes:
    """Check that ``blob`` is header + reference CTR body; return the plaintext."""
    header = Header.parse(blob)
    assert header.suite is key.suite
    return ctr(key.material(), header.iv, unframe(blob[HEADER_SIZE:]))


async def agen(pieces: list[bytes], delay: float = 0) -> AsyncIterator[bytes]:
    for piece in pieces:
        if delay:
            await asyncio.sleep(delay)
        yield piece


async def collect(it: AsyncIterable[bytes | bytearray]) -> bytes:
    return b"".join([piece async for piece in it])


@pytest.mark.parametrize(
    "length", [0, 1, 15, 16, 17, 64511, 64512, 64513, BATCH - 1, BATCH + 1, 3 * BATCH + 7]
)
async def test_file_roundtrip(tmp_path: Path, length: int) -> None:
    key = kstream.Key.generate(256)
    data = os.urandom(length)
    (tmp_path / "p").write_bytes(data)
    await kstream.encrypt_file(tmp_path / "p", tmp_path / "c", key=key, backend="openssl")
    blob = (tmp_path / "c").read_bytes()
    assert len(blob) == HEADER_SIZE + framed_size(length, DEFAULT_SEGMENT)
    assert body_of(blob, key) == data
    await kstream.decrypt_file(tmp_path / "c", tmp_path / "d", key=key, backend="openssl")
    assert (tmp_path / "d").read_bytes() == data


async def test_fresh_iv_per_file(tmp_path: Path) -> None:
    key = kstream.Key.generate()
    (tmp_path / "p").write_bytes(b"same input")
    ivs = set()
    for i in range(5):
        await kstream.encrypt_file(tmp_path / "p", tmp_path / f"c{i}", key=key)
        ivs.add(Header.parse((tmp_path / f"c{i}").read_bytes()).iv)
    assert len(ivs) == 5


async def test_raw_mode_is_bare_ctr(tmp_path: Path) -> None:
    key, iv = kstream.Key.generate(192), os.urandom(16)
    data = os.urandom(100_000)
    (tmp_path / "p").write_bytes(data)
    await kstream.encrypt_file(tmp_path / "p", tmp_path / "c", key=key, raw=True, iv=iv)
    assert (tmp_path / "c").read_bytes() == ctr(key.material(), iv, data)
    await kstream.decrypt_file(tmp_path / "c", tmp_path / "d", key=key, raw=True, iv=iv)
    assert (tmp_path / "d").read_bytes() == data


@settings(max_examples=25, deadline=None)
@given(
    st.sampled_from([0, 1, 17, 64512, BATCH + 1]) | st.integers(0, 70000),
    st.lists(st.integers(0, 10**7), max_size=10),
)
def test_stream_any_split_equals_file_form(length: int, cuts: list[int]) -> None:
    key = kstream.Key.generate()
    data = os.urandom(length)

    async def go() -> tuple[bytes, bytes]:
        blob = await collect(kstream.encrypt_stream(agen(split(data, cuts)), key=key))
        header = Header.parse(blob)
        plain = await collect(kstream.decrypt_stream(agen(split(blob, cuts)), key=key))
        raw = await collect(
            kstream.encrypt_stream(agen(split(data, cuts)), key=key, raw=True, iv=header.iv)
        )
        assert unframe(blob[HEADER_SIZE:]) == raw
        return blob, plain

    blob, plain = asyncio.run(go())
    assert body_of(blob, key) == data
    assert plain == data


async def test_stream_reader_source() -> None:
    key = kstream.Key.generate()
    data = os.urandom(200_000)
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    blob = await collect(kstream.encrypt_stream(reader, key=key))
    assert body_of(blob, key) == data


async def test_aiofiles_objects(tmp_path: Path) -> None:
    key = kstream.Key.generate()
    data = os.urandom(300_000)
    (tmp_path / "p").write_bytes(data)
    async with (
        aiofiles.open(tmp_path / "p", "rb") as src,
        aiofiles.open(tmp_path / "c", "wb") as dst,
    ):
        await kstream.encrypt_file(src, dst, key=key)
    assert body_of((tmp_path / "c").read_bytes(), key) == data


async def test_existing_output_and_same_file_refused(tmp_path: Path) -> None:
    key = kstream.Key.generate()
    (tmp_path / "p").write_bytes(b"data")
    (tmp_path / "c").write_bytes(b"precious")
    with pytest.raises(UsageError, match="already exists; use force=True to overwrite"):
        await kstream.encrypt_file(tmp_path / "p", tmp_path / "c", key=key)
    assert (tmp_path / "c").read_bytes() == b"precious"
    with pytest.raises(UsageError, match="same file"):
        await kstream.encrypt_file(tmp_path / "p", tmp_path / "p", key=key, force=True)
    await kstream.encrypt_file(tmp_path / "p", tmp_path / "c", key=key, force=True)
    assert body_of((tmp_path / "c").read_bytes(), key) == b"data"


async def test_decrypt_errors(tmp_path: Path) -> None:
    key = kstream.Key.generate(128)
    (tmp_path / "p").write_bytes(b"hello")
    await kstream.encrypt_file(tmp_path / "p", tmp_path / "c", key=key)
    with pytest.raises(InvalidKey, match="AES-256 .* encrypted with AES-128-CTR"):
        await kstream.decrypt_file(tmp_path / "c", tmp_path / "d", key=kstream.Key.generate(256))
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(FormatError, match="input is empty"):
        await kstream.decrypt_file(tmp_path / "empty", tmp_path / "d", key=key)
    with pytest.raises(FormatError, match="not a kstream file"):
        await kstream.decrypt_file(tmp_path / "p", tmp_path / "d", key=key)
    assert not (tmp_path / "d").exists()
    assert sorted(os.listdir(tmp_path)) == ["c", "empty", "p"]


async def test_argument_errors(tmp_path: Path) -> None:
    key = kstream.Key.generate()
    (tmp_path / "p").write_bytes(b"x")
    with pytest.raises(
        UsageError, match=r"^raw=True needs iv= \(16 bytes\): raw output has no header$"
    ):
        await kstream.encrypt_file(tmp_path / "p", tmp_path / "c", key=key, raw=True)
    with pytest.raises(
        UsageError,
        match=r"^iv= is only allowed with raw=True; kstream files get a fresh random IV$",
    ):
        await kstream.encrypt_file(tmp_path / "p", tmp_path / "c", key=key, iv=bytes(16))
    with pytest.raises(UsageError, match="must be a kstream.Key"):
        await kstream.encrypt_file(tmp_path / "p", tmp_path / "c", key=b"0" * 16)  # type: ignore[arg-type]
    with pytest.raises(IOFailure, match="cannot open input .*No such file"):
        await kstream.encrypt_file(tmp_path / "missing", tmp_path / "c", key=key)
    with pytest.raises(IOFailure, match="cannot create output"):
        await kstream.encrypt_file(tmp_path / "p", tmp_path / "no" / "c", key=key)


class FailingSource:
    """An async file whose reads fail after some data, like a disk error mid-stream."""

    def __init__(self, good: int) -> None:
        self.left = good

    async def read(self, n: int) -> bytes:
        if self.left <= 0:
            raise OSError(5, "Input/output error")
        k = min(n, self.left)
        self.left -= k
        return bytes(k)


async def test_error_mid_stream_leaves_no_output(tmp_path: Path) -> None:
    key = kstream.Key.generate()
    (tmp_path / "c").write_bytes(b"precious")
    with pytest.raises(OSError, match="Input/output error"):
        await kstream.encrypt_file(FailingSource(3 * BATCH), tmp_path / "c", key=key, force=True)
    assert os.listdir(tmp_path) == ["c"]
    assert (tmp_path / "c").read_bytes() == b"precious"


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def test_cancellation_cleans_up(tmp_path: Path) -> None:
    key = kstream.Key.generate()
    before = open_fds()
    r, w = os.pipe()  # a source that delivers some data, then stalls forever
    os.write(w, os.urandom(50_000))
    task = asyncio.create_task(kstream.encrypt_file(r, tmp_path / "c", key=key))
    await asyncio.sleep(0.3)
    partial = [n for n in os.listdir(tmp_path) if n.endswith(".kstream-partial")]
    assert len(partial) == 1 and partial[0].startswith(".c.")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert os.listdir(tmp_path) == []
    os.close(w)  # lets the stalled reader thread see EOF and finish
    os.close(r)
    await asyncio.sleep(0.1)
    assert open_fds() == before


async def test_stream_cancellation_and_early_close() -> None:
    key = kstream.Key.generate()
    it = kstream.encrypt_stream(agen([bytes(BATCH)] * 50, delay=0.01), key=key)
    first = await anext(it)
    assert first[:8] == b"KSTREAM\x1a"
    await anext(it)
    await it.aclose()  # stops the read-ahead task and closes the cipher

    async def consume() -> None:
        async for _ in kstream.decrypt_stream(
            agen([bytes(100)] * 1000, delay=0.01), key=key, raw=True, iv=bytes(16)
        ):
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert pending == []


async def test_verify_with_openssl_notes_there_is_nothing_to_check(tmp_path: Path) -> None:
    key = kstream.Key.generate()
    (tmp_path / "p").write_bytes(b"abc")
    notes: list[str] = []
    await kstream.encrypt_file(
        tmp_path / "p", tmp_path / "c", key=key, backend="openssl", verify=True, notify=notes.append
    )
    assert notes == ["verify=True has nothing to check: openssl is the reference"]
    assert body_of((tmp_path / "c").read_bytes(), key) == b"abc"


@pytest.mark.parametrize(
    "pieces",
    [
        "mib",  # 1 MiB reads against 1008 KiB segments: every batch straddles two pieces
        "segment",  # exactly segment-sized pieces, ending on a boundary (then an empty last one)
        "tiny",  # 1000-byte pieces, joined in runs before the cipher sees them
        "mixed",  # odd sizes, large and small, not multiples of the AES block
        "empty",
    ],
)
async def test_stream_equals_the_reference_file_byte_for_byte(pieces: str) -> None:
    """``encrypt_stream`` encrypts the caller's pieces straight into its output buffers;
    the result must be exactly the file docs/format.md describes (tests/reference.py),
    tags included, whatever the pieces look like."""
    from reference import seal

    key = kstream.Key.generate(256)
    size = {
        "mib": 3 * (1 << 20) + 5,
        "segment": 2 * DEFAULT_SEGMENT,
        "tiny": 300_000,
        "mixed": DEFAULT_SEGMENT + 100_003,
        "empty": 0,
    }[pieces]
    data = os.urandom(size)
    cuts = {
        "mib": list(range(0, size, 1 << 20)),
        "segment": [DEFAULT_SEGMENT],
        "tiny": list(range(0, size, 1000)),
        "mixed": [7, 70_000, 70_013, 600_001, 600_002, DEFAULT_SEGMENT - 1, DEFAULT_SEGMENT + 5],
        "empty": [],
    }[pieces]
    out = [
        p async for p in kstream.encrypt_stream(agen(split(data, cuts)), key=key, backend="openssl")
    ]
    blob = b"".join(out)
    header = blob[:HEADER_SIZE]
    assert blob == seal(key.material(), header, data, DEFAULT_SEGMENT)
    # One output piece per segment after the header, each a new object of its own.
    assert len(out) == 1 + size // DEFAULT_SEGMENT + 1
    assert len({id(p) for p in out}) == len(out)


async def test_raw_stream_of_mib_pieces_is_bare_ctr() -> None:
    key, iv = kstream.Key.generate(128), os.urandom(16)
    data = os.urandom(2 * (1 << 20) + 33)
    cuts = [1 << 20, 2 << 20]
    out = await collect(
        kstream.encrypt_stream(agen(split(data, cuts)), key=key, backend="openssl", raw=True, iv=iv)
    )
    assert out == ctr(key.material(), iv, data)


# --- passphrases ------------------------------------------------------------------------------

PHRASE = "correct horse"


def _patched(blob: bytes, offset: int, value: int) -> bytes:
    out = bytearray(blob)
    out[offset] = value
    return bytes(out)


@pytest.mark.parametrize("length", [0, 5, BATCH, 2 * BATCH + 9])
@pytest.mark.parametrize("jobs", [1, 3])
async def test_passphrase_file_roundtrip_ranges_and_stream(
    tmp_path: Path, length: int, jobs: int
) -> None:
    from reference import seal_with_passphrase

    data = os.urandom(length)
    (tmp_path / "p").write_bytes(data)
    await kstream.encrypt_file(
        tmp_path / "p",
        tmp_path / "c",
        passphrase=PHRASE,
        work_factor=10,
        backend="openssl",
        jobs=jobs,
    )
    blob = (tmp_path / "c").read_bytes()
    header = Header.parse(blob)
    assert header.size == 52 and header.kdf is not None
    assert (header.kdf.log2n, header.kdf.r, header.kdf.p) == (10, 8, 1)
    assert blob == seal_with_passphrase(PHRASE.encode(), blob[:52], data, DEFAULT_SEGMENT)
    # Ranges (pread of the header and its block), the fd stream, and the async stream.
    await kstream.decrypt_file(
        tmp_path / "c", tmp_path / "d", passphrase=PHRASE.encode(), backend="openssl", jobs=jobs
    )
    assert (tmp_path / "d").read_bytes() == data
    with open(tmp_path / "c", "rb") as src:
        fd = os.open(tmp_path / "e", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            await kstream.decrypt_file(src.fileno(), fd, passphrase=PHRASE, backend="openssl")
        finally:
            os.close(fd)
    assert (tmp_path / "e").read_bytes() == data
    assert (
        await collect(
            kstream.decrypt_stream(
                agen(split(blob, [7, 33, 51, 52, 99])), passphrase=PHRASE, backend="openssl"
            )
        )
        == data
    )
    again = await collect(
        kstream.encrypt_stream(agen([data]), passphrase=PHRASE, work_factor=10, backend="openssl")
    )
    assert again[36:52] != blob[36:52]  # a fresh salt per file
    assert (
        await collect(
            kstream.decrypt_stream(agen([again]), passphrase=lambda: PHRASE, backend="openssl")
        )
        == data
    )


async def test_passphrase_changes_to_the_header_fail_at_segment_0(tmp_path: Path) -> None:
    """Salt and parameters are authenticated: each change gives another key or K_mac."""
    data = os.urandom(1000)
    blob = await collect(
        kstream.encrypt_stream(agen([data]), passphrase=PHRASE, work_factor=10, backend="openssl")
    )
    changed = [
        _patched(blob, 36, blob[36] ^ 1),
        _patched(blob, 51, blob[51] ^ 0x80),
        _patched(blob, 33, 11),
        _patched(blob, 33, 9),
        _patched(blob, 34, 7),
        _patched(blob, 16, blob[16] ^ 1),
    ]
    for bad in [blob, *changed]:
        phrase = "wrong" if bad is blob else PHRASE
        with pytest.raises(kstream.IntegrityError) as info:
            await collect(kstream.decrypt_stream(agen([bad]), passphrase=phrase, backend="openssl"))
        assert str(info.value) == (
            "authentication failed: wrong passphrase or the file was modified (segment 0)"
        )


async def test_passphrase_work_factor_cap(tmp_path: Path) -> None:
    data = b"x" * 100
    blob = await collect(
        kstream.encrypt_stream(agen([data]), passphrase=PHRASE, work_factor=10, backend="openssl")
    )
    with pytest.raises(
        FormatError, match="work factor is 10 .* limit of 9; .* max_work_factor=10$"
    ):
        await collect(
            kstream.decrypt_stream(
                agen([blob]), passphrase=PHRASE, max_work_factor=9, backend="openssl"
            )
        )
    asked: list[int] = []

    def ask() -> str:
        asked.append(1)
        return PHRASE

    # A crafted factor of 40 (a TiB) is refused before the passphrase is even asked for.
    crafted = _patched(blob, 33, 40)
    (tmp_path / "c").write_bytes(crafted)
    with pytest.raises(FormatError, match="work factor is 40 .* limit of 20"):
        await kstream.decrypt_file(
            tmp_path / "c", tmp_path / "d", passphrase=ask, backend="openssl"
        )
    assert not asked and not list(tmp_path.glob("*partial*")) and not (tmp_path / "d").exists()
    assert (
        await collect(
            kstream.decrypt_stream(
                agen([blob]), passphrase=PHRASE, max_work_factor=10, backend="openssl"
            )
        )
        == data
    )


async def test_work_factors_beyond_memory_are_usage_errors(tmp_path: Path) -> None:
    """scrypt at log2 N = 30 needs 128 * 8 * 2^30 bytes: a usage error that says how much,
    not a bare MemoryError; a cap beyond what a file can hold is refused before any work."""
    needs = (
        "scrypt cannot get the 1 TiB of memory that work factor 30 needs (128 * r * N "
        "bytes, r = 8); "
    )
    (tmp_path / "p").write_bytes(b"data")
    runs: list[tuple[Callable[..., Awaitable[None]], str, dict[str, Any], str]] = [
        (
            kstream.encrypt_file,
            "p",
            {"work_factor": 30},
            needs + "use a lower work_factor (the default, 18, needs 256 MiB)",
        ),
        (
            kstream.decrypt_file,
            "c",
            {"max_work_factor": 30},
            needs + "the file can only be decrypted where that much memory is free",
        ),
    ]
    runs += [
        (
            kstream.decrypt_file,
            "c",
            {"max_work_factor": limit},
            f"max_work_factor={limit} is no work factor a kstream file can hold; give 1 to 127",
        )
        for limit in (0, 128)
    ]
    await kstream.encrypt_file(tmp_path / "p", tmp_path / "c", passphrase=PHRASE, work_factor=10)
    (tmp_path / "c").write_bytes(_patched((tmp_path / "c").read_bytes(), 33, 30))
    for transform, src, kw, message in runs:
        with pytest.raises(UsageError) as caught:
            await transform(tmp_path / src, tmp_path / "out", passphrase=PHRASE, **kw)
        assert str(caught.value) == message
    assert sorted(os.listdir(tmp_path)) == ["c", "p"]


async def test_passphrase_or_key_exactly_one_and_the_right_one(tmp_path: Path) -> None:
    key = kstream.Key.generate(256)
    (tmp_path / "p").write_bytes(b"data")
    for kw in ({}, {"key": key, "passphrase": PHRASE}):
        with pytest.raises(UsageError, match="exactly one of key= .* and passphrase="):
            await kstream.encrypt_file(tmp_path / "p", tmp_path / "c", **kw)  # type: ignore[arg-type]
    with pytest.raises(
        UsageError,
        match="^raw=True takes a key: raw output has no header to hold a passphrase's salt$",
    ):
        await kstream.encrypt_file(
            tmp_path / "p", tmp_path / "c", passphrase=PHRASE, raw=True, iv=bytes(16)
        )
    await kstream.encrypt_file(tmp_path / "p", tmp_path / "k.kst", key=key, backend="openssl")
    await kstream.encrypt_file(
        tmp_path / "p", tmp_path / "p.kst", passphrase=PHRASE, work_factor=10, backend="openssl"
    )
    with pytest.raises(
        UsageError,
        match="this file was encrypted with a key, not a passphrase: "
        r"give the key with key= \(a kstream.Key\)$",
    ):
        await kstream.decrypt_file(tmp_path / "k.kst", tmp_path / "d", passphrase=PHRASE)
    with pytest.raises(
        UsageError,
        match="this file is protected by a passphrase, not a key: "
        r"give the passphrase with passphrase= \(bytes or str\)$",
    ):
        await kstream.decrypt_file(tmp_path / "p.kst", tmp_path / "d", key=key)
    assert not (tmp_path / "d").exists() and not list(tmp_path.glob("*partial*"))
    with pytest.raises(FormatError, match="passphrase block needs 52 bytes, found 40"):
        await collect(
            kstream.decrypt_stream(
                agen([(tmp_path / "p.kst").read_bytes()[:40]]), passphrase=PHRASE
            )
        )


# --- outputs that are streams: FIFOs, character devices, open descriptors ----------------------


class Drain:
    """A reader thread on a FIFO or pipe: what a consumer on the other end receives."""

    def __init__(self, path: str | None = None, fd: int | None = None) -> None:
        import threading

        self.data = bytearray()
        self._path, self._fd = path, fd
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        fd = self._fd if self._fd is not None else os.open(str(self._path), os.O_RDONLY)
        try:
            while chunk := os.read(fd, 1 << 16):
                self.data += chunk
        finally:
            os.close(fd)

    def result(self) -> bytes:
        self._thread.join(timeout=60)
        assert not self._thread.is_alive()
        return bytes(self.data)


async def test_fifo_output_is_written_directly(tmp_path: Path) -> None:
    """An existing FIFO is an output to write into: no --force, no temporary file next to
    it, no rename; the reader gets exactly what a file would have held."""
    key = kstream.Key.generate()
    data = os.urandom(3 * BATCH + 11)
    (tmp_path / "p").write_bytes(data)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = Drain(str(fifo))
    await kstream.encrypt_file(tmp_path / "p", fifo, key=key, jobs=4)
    blob = reader.result()
    assert body_of(blob, key) == data
    (tmp_path / "c").write_bytes(blob)
    reader = Drain(str(fifo))
    await kstream.decrypt_file(tmp_path / "c", str(fifo), key=key)
    assert reader.result() == data
    assert sorted(os.listdir(tmp_path)) == ["c", "fifo", "p"]  # no partial file, FIFO kept
    assert (tmp_path / "fifo").is_fifo()


async def test_fifo_without_a_reader_waits_and_can_be_cancelled(tmp_path: Path) -> None:
    key = kstream.Key.generate()
    (tmp_path / "p").write_bytes(b"late reader")
    os.mkfifo(tmp_path / "fifo")
    task = asyncio.create_task(kstream.encrypt_file(tmp_path / "p", tmp_path / "fifo", key=key))
    await asyncio.sleep(0.3)
    assert not task.done()  # waiting for a reader, without holding a worker thread
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=5)
    # And once a reader comes, the same call goes through.
    task = asyncio.create_task(kstream.encrypt_file(tmp_path / "p", tmp_path / "fifo", key=key))
    await asyncio.sleep(0.2)
    reader = Drain(str(tmp_path / "fifo"))
    await asyncio.wait_for(task, timeout=30)
    assert body_of(reader.result(), key) == b"late reader"


async def test_fifo_without_a_reader_says_so_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run whose reader never comes must not look hung: one notice, then the same wait."""
    monkeypatch.setattr(kstream.api, "FIFO_NOTICE_AFTER", 0.2)
    (tmp_path / "p").write_bytes(b"nobody reads")
    os.mkfifo(tmp_path / "fifo")
    notices: list[str] = []
    task = asyncio.create_task(
        kstream.encrypt_file(
            tmp_path / "p", tmp_path / "fifo", key=kstream.Key.generate(), notify=notices.append
        )
    )
    await asyncio.sleep(0.1)
    assert notices == []
    await asyncio.sleep(0.6)
    assert notices == [
        f"waiting for a reader to open the FIFO '{tmp_path / 'fifo'}'; "
        "nothing is written before one does (Ctrl-C stops)"
    ]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=5)


@pytest.mark.parametrize("into", ["file", "async file"])
async def test_no_reader_thread_outlives_the_call(tmp_path: Path, into: str) -> None:
    """A failed decryption of a pipe whose writer is still open leaves no thread reading:
    the caller's next file, which reuses the pipe's descriptor number, is read whole by
    the next call (the fd stream driver into a file, the iterate driver into an async
    file object)."""
    key = kstream.Key.generate()
    (tmp_path / "p").write_bytes(os.urandom(3 * BATCH))
    await kstream.encrypt_file(tmp_path / "p", tmp_path / "c", key=key)
    blob = bytearray((tmp_path / "c").read_bytes())
    blob[HEADER_SIZE + (BATCH + 20) + 100] ^= 1  # segment 0 verifies, segment 1 does not
    r, w = os.pipe()
    feeder = asyncio.get_running_loop().run_in_executor(
        None, os.write, w, bytes(blob[: -BATCH // 2])
    )
    try:
        with pytest.raises(kstream.IntegrityError, match="segment 1"):
            if into == "file":
                await kstream.decrypt_file(r, tmp_path / "d", key=key)
            else:
                async with aiofiles.open(tmp_path / "d", "wb") as sink:
                    await kstream.decrypt_file(r, sink, key=key)
        os.close(r)
        data = os.urandom(100_016)
        (tmp_path / "next").write_bytes(data)
        fd = os.open(tmp_path / "next", os.O_RDONLY)
        try:
            assert fd == r  # the caller's next file has the pipe's number
            with contextlib.suppress(BrokenPipeError):  # wakes a read still waiting
                os.write(w, b"x" * 16)
            await asyncio.sleep(0.2)
            assert os.lseek(fd, 0, os.SEEK_CUR) == 0
            await kstream.encrypt_file(fd, tmp_path / "next.kst", key=key)
        finally:
            os.close(fd)
    finally:
        os.close(w)
        with contextlib.suppress(OSError):
            await feeder
    assert body_of((tmp_path / "next.kst").read_bytes(), key) == data


class FailingContext:
    """A cipher context whose library fails in a way kstream does not expect."""

    def update(self, data: object) -> bytes:
        raise ValueError("the library's own trouble")

    def update_into(self, data: object, out: object) -> int:
        raise ValueError("the library's own trouble")


async def test_an_unexpected_cipher_library_failure_is_a_kstream_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A library caller sees only KstreamError subclasses for kstream's failures; the
    library's own exception stays the cause."""
    key = kstream.Key.generate()
    blob = await collect(kstream.encrypt_stream(agen([b"x" * 100]), key=key, backend="openssl"))
    monkeypatch.setattr(OpenSSLStream, "_context", lambda self: FailingContext())
    with pytest.raises(kstream.BackendFailure) as caught:
        await collect(kstream.decrypt_stream(agen([blob]), key=key, backend="openssl"))
    assert str(caught.value) == (
        "the openssl cipher failed unexpectedly (ValueError: the "
        "library's own trouble); please report this"
    )
    assert isinstance(caught.value.__cause__, ValueError)
    assert caught.value.exit_code == 70  # an internal error, as on the command line


async def test_dev_null_is_an_integrity_check(tmp_path: Path) -> None:
    key = kstream.Key.generate()
    (tmp_path / "p").write_bytes(os.urandom(2 * BATCH + 5))
    await kstream.encrypt_file(tmp_path / "p", "/dev/null", key=key)  # no force=True needed
    await kstream.encrypt_file(tmp_path / "p", tmp_path / "c", key=key)
    await kstream.decrypt_file(tmp_path / "c", "/dev/null", key=key)
    blob = bytearray((tmp_path / "c").read_bytes())
    blob[HEADER_SIZE + BATCH + 20 + 7] ^= 1  # inside segment 1
    (tmp_path / "c").write_bytes(blob)
    with pytest.raises(kstream.IntegrityError) as info:
        await kstream.decrypt_file(tmp_path / "c", "/dev/null", key=key)
    assert str(info.value).startswith(
        "authentication failed: the file was modified at segment 1 (bytes "
    )
    assert "pipe" not in str(info.value)  # /dev/null kept nothing: nothing to say about it


async def test_pipe_by_dev_fd_path(tmp_path: Path) -> None:
    """What a shell's ``>(wc -c)`` hands over: /dev/fd/N, a pipe kstream did not open. It is
    written as that descriptor and left open for its owner."""
    key = kstream.Key.generate()
    data = os.urandom(BATCH + 3)
    (tmp_path / "p").write_bytes(data)
    await kstream.encrypt_file(tmp_path / "p", tmp_path / "c", key=key)
    r, w = os.pipe()
    reader = Drain(fd=r)
    try:
        await kstream.decrypt_file(tmp_path / "c", f"/dev/fd/{w}", key=key)
        os.fstat(w)  # still open: kstream does not close what it did not open
    finally:
        os.close(w)
    assert reader.result() == data


async def test_failure_midway_into_a_pipe_says_what_the_reader_has(tmp_path: Path) -> None:
    key = kstream.Key.generate()
    data = os.urandom(3 * BATCH + 1)
    (tmp_path / "p").write_bytes(data)
    await kstream.encrypt_file(tmp_path / "p", tmp_path / "c", key=key)
    blob = bytearray((tmp_path / "c").read_bytes())
    blob[HEADER_SIZE + 2 * (BATCH + 20) + 9] ^= 1  # segment 2
    (tmp_path / "c").write_bytes(blob)
    os.mkfifo(tmp_path / "fifo")
    reader = Drain(str(tmp_path / "fifo"))
    with pytest.raises(kstream.IntegrityError) as info:
        await kstream.decrypt_file(tmp_path / "c", tmp_path / "fifo", key=key)
    assert reader.result() == data[: 2 * BATCH]  # the verified segments, nothing of segment 2
    assert str(info.value).endswith(
        f"; {2 * BATCH} bytes had already gone into the pipe '{tmp_path / 'fifo'}' (nothing "
        "to remove: a pipe cannot take them back)"
    )


async def test_ciphertext_is_not_written_to_a_terminal_path(tmp_path: Path) -> None:
    key = kstream.Key.generate()
    (tmp_path / "p").write_bytes(b"secret")
    leader, follower = os.openpty()
    try:
        with pytest.raises(UsageError, match="refusing to write ciphertext to the terminal"):
            await kstream.encrypt_file(tmp_path / "p", os.ttyname(follower), key=key)
        await kstream.encrypt_file(tmp_path / "p", tmp_path / "c", key=key)
        await kstream.decrypt_file(tmp_path / "c", os.ttyname(follower), key=key)
        assert os.read(leader, 100) == b"secret"  # plaintext to a terminal is fine
    finally:
        os.close(leader)
        os.close(follower)


# --- errors name the API's parameters, not the command line's flags ------------------------------


async def test_api_errors_name_api_parameters(tmp_path: Path) -> None:
    """Each hint a library caller can get names a keyword argument; the same error shown by
    the command line names its flag (tests/cli/test_cipher_outputs.py checks that side)."""
    key = kstream.Key.generate()
    (tmp_path / "p").write_bytes(b"x")
    await kstream.encrypt_file(tmp_path / "p", tmp_path / "c", key=key)
    await kstream.encrypt_file(tmp_path / "p", tmp_path / "w.kst", passphrase="pw", work_factor=11)
    calls = [
        (kstream.encrypt_file(tmp_path / "p", tmp_path / "c", key=key), "force=True"),
        (kstream.encrypt_file(tmp_path / "p", tmp_path / "r", key=key, raw=True), "iv="),
        (kstream.encrypt_file(tmp_path / "p", tmp_path / "r", key=key, iv=bytes(16)), "raw=True"),
        (
            kstream.encrypt_file(
                tmp_path / "p", tmp_path / "r", passphrase="pw", raw=True, iv=bytes(16)
            ),
            "raw=True",
        ),
        (kstream.decrypt_file(tmp_path / "p", tmp_path / "d", key=key), "raw=True"),
        (kstream.decrypt_file(tmp_path / "c", tmp_path / "d", passphrase="pw"), "key="),
        (kstream.decrypt_file(tmp_path / "w.kst", tmp_path / "d", key=key), "passphrase="),
        (
            kstream.decrypt_file(
                tmp_path / "w.kst", tmp_path / "d", passphrase="pw", max_work_factor=10
            ),
            "max_work_factor=11",
        ),
    ]
    for call, hint in calls:
        with pytest.raises(kstream.KstreamError) as info:
            await call
        message = str(info.value)
        assert hint in message, message
        assert "--" not in message, message


# --- a Session: resolved once, used for many runs --------------------------------------------


async def test_a_session_resolves_its_backend_once_for_many_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first run resolves the backend (one probe, one notice); the runs after it reuse
    the object. Each output is checked against OpenSSL's CTR from the reference."""
    import kstream.backends.select as select

    calls: list[str] = []
    real = select.select_backend

    def counting(name: str, *args: Any, **kw: Any) -> Any:
        calls.append(name)
        return real(name, *args, **kw)

    monkeypatch.setattr(select, "select_backend", counting)
    monkeypatch.setattr(kstream.engine.plan, "select_backend", counting)
    notices: list[str] = []
    key = kstream.Key.generate()
    session = kstream.Session(key=key, notify=notices.append)
    for n in range(3):
        data = os.urandom(1000 * n + 7)
        (tmp_path / f"p{n}").write_bytes(data)
        await session.encrypt_file(tmp_path / f"p{n}", tmp_path / f"c{n}")
        await session.decrypt_file(tmp_path / f"c{n}", tmp_path / f"d{n}")
        assert (tmp_path / f"d{n}").read_bytes() == data
        blob = (tmp_path / f"c{n}").read_bytes()
        assert body_of(blob, key) == data
    assert calls == ["auto"]
    assert len(set(notices)) == len(notices) <= 1  # the fallback notice, once if at all


async def test_a_session_streams_both_ways(tmp_path: Path) -> None:
    key = kstream.Key.generate(256)
    session = kstream.Session(key=key, backend="openssl")
    data = os.urandom(3 * 65536 + 11)
    blob = b"".join([bytes(p) async for p in session.encrypt_stream(one(data))])
    assert body_of(blob, key) == data
    assert b"".join([p async for p in session.decrypt_stream(one(blob))]) == data
    raw = b"".join(
        [bytes(p) async for p in session.encrypt_stream(one(data), raw=True, iv=bytes(16))]
    )
    assert raw == ctr(key.material(), bytes(16), data)


def test_a_session_never_shows_its_secret() -> None:
    key = kstream.Key(bytes(range(32)))
    shown = repr(kstream.Session(key=key)) + repr(kstream.Session(passphrase="hunter22"))
    assert shown == (
        "<kstream.Session key, backend auto><kstream.Session passphrase, backend auto>"
    )
    assert "hunter22" not in shown and bytes(range(32)).hex() not in shown


def test_a_session_checks_its_arguments_when_made() -> None:
    with pytest.raises(UsageError, match="exactly one of key= .* and passphrase="):
        kstream.Session()
    with pytest.raises(UsageError, match="must be a kstream.Key"):
        kstream.Session(key=b"0" * 16)  # type: ignore[arg-type]


def test_the_public_names_are_all_there_and_only_they() -> None:
    """``kstream.__all__`` is the public API: each name resolves (lazily), and the lazy
    table offers nothing that ``__all__`` does not list."""
    import kstream as package

    assert sorted(package.__all__) == sorted([*package._LAZY, "__version__"])
    for name in package.__all__:
        assert getattr(package, name) is not None
    with pytest.raises(AttributeError, match="has no attribute 'process_file'"):
        package.process_file  # noqa: B018


def test_a_session_opens_files_with_its_key_and_backend(tmp_path: Path) -> None:
    """Session.open writes what decrypt_file reads and reads what encrypt_file wrote, at
    any offset, with the session's key and its resolved backend."""
    key = kstream.Key.generate()
    session = kstream.Session(key=key, backend="openssl")
    data = os.urandom(3 * 4096 + 100)
    with session.open(tmp_path / "w.kst", "wb", segment_size=4096) as out:
        out.write(data[:5000])
        out.write(data[5000:])
    kstream.run(kstream.decrypt_file(tmp_path / "w.kst", tmp_path / "w", key=key))
    assert (tmp_path / "w").read_bytes() == data
    (tmp_path / "p").write_bytes(data)
    kstream.run(session.encrypt_file(tmp_path / "p", tmp_path / "c"))
    with session.open(tmp_path / "c", cache_segments=1) as f:
        f.seek(4000)
        assert f.read(200) == data[4000:4200]
        assert f.read_at(len(data) - 7, 100) == data[-7:]
    with pytest.raises(UsageError, match="cache_segments must be at least 1"):
        session.open(tmp_path / "c", cache_segments=0)


def test_a_session_s_files_share_one_backend_resolution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kstream.backends.select as select

    calls: list[str] = []
    real = select.select_backend

    def counting(name: str, *args: Any, **kw: Any) -> Any:
        calls.append(name)
        return real(name, *args, **kw)

    monkeypatch.setattr(select, "select_backend", counting)
    monkeypatch.setattr(kstream.engine.plan, "select_backend", counting)
    session = kstream.Session(key=kstream.Key.generate(), backend="openssl")
    for n in range(3):
        with session.open(tmp_path / f"{n}.kst", "wb") as out:
            out.write(b"x" * n)
        with session.open(tmp_path / f"{n}.kst") as f:
            assert f.read() == b"x" * n
    assert calls == ["openssl"]
