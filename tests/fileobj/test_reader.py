"""kstream.open(..., "rb"): random sequences of seek/read/readinto/read_at give the
plaintext's bytes; damaged files fail where decrypt fails, with decrypt's words."""

from __future__ import annotations

import asyncio
import io
import os
import pickle
import random
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sealed import PASSPHRASE, S, seal_file

import kstream
from kstream.errors import FormatError, IntegrityError, KstreamError, UsageError
from kstream.format import HEADER_SIZE, OVERHEAD

#: Around every boundary: empty, inside the first segment, one and several whole
#: segments (the last then empty), and partial last segments.
#: The fixtures are the same for every example (a key; files are made per example).
FIXTURES = [HealthCheck.function_scoped_fixture]
SIZES = [0, 1, 15, 16, S - 1, S, S + 1, 2 * S, 3 * S, 3 * S + 7, 5 * S + 33]


def ops() -> st.SearchStrategy[list[tuple[str, int, int]]]:
    """(operation, a, b): a and b are offsets or sizes, some past the end, some negative."""
    number = st.integers(-2, 6 * S + 10)
    op = st.tuples(
        st.sampled_from(["seek0", "seek1", "seek2", "read", "readinto", "read_at", "peek", "line"]),
        number,
        number,
    )
    return st.lists(op, max_size=25)


def run_model(f: kstream.DecryptedFile, plain: bytes, steps: list[tuple[str, int, int]]) -> None:
    pos = 0
    for name, a, b in steps:
        if name.startswith("seek"):
            whence = int(name[-1])
            target = (0, pos, len(plain))[whence] + a
            if target < 0:
                with pytest.raises(ValueError):
                    f.seek(a, whence)
                continue
            assert f.seek(a, whence) == target
            pos = target
        elif name == "read":
            size = None if a == -2 else a
            got = f.read(size)
            want = plain[pos:] if size is None or size < 0 else plain[pos : pos + size]
            assert got == want
            pos += len(want)
        elif name == "readinto":
            buffer = bytearray(max(a, 0))
            n = f.readinto(buffer)
            want = plain[pos : pos + len(buffer)]
            assert (n, bytes(buffer[:n])) == (len(want), want)
            pos += n
        elif name == "read_at":
            if a < 0 or b < 0:
                with pytest.raises(ValueError):
                    f.read_at(a, b)
                continue
            assert f.read_at(a, b) == plain[a : a + b]
        elif name == "peek":
            got = f.peek()
            assert plain[pos:].startswith(got) and (len(got) > 0) == (pos < len(plain))
        else:
            want = plain[pos:]
            want = want[: want.index(b"\n") + 1] if b"\n" in want else want
            assert f.readline() == want
            pos += len(want)
        assert f.tell() == pos


@pytest.mark.parametrize("read_ahead", [False, True], ids=["", "read-ahead"])
@pytest.mark.parametrize("size", SIZES)
@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURES)
@given(steps=ops())
def test_random_operations_give_the_plaintext(
    size: int, read_ahead: bool, steps: list[tuple[str, int, int]], key_bytes: bytes
) -> None:
    plain = bytes(random.Random(size).choice(b"ab\n") for _ in range(size))
    blob = seal_file(plain, key_bytes)
    key = kstream.Key(key_bytes)
    with kstream.open(io.BytesIO(blob), key=key, cache_segments=2, read_ahead=read_ahead) as f:
        assert f.size == size and f.readable() and f.seekable() and not f.writable()
        run_model(f, plain, steps)


@pytest.mark.parametrize("size", [0, S, 3 * S + 7])
@settings(max_examples=8, deadline=None, suppress_health_check=FIXTURES)
@given(steps=ops())
def test_key_files_and_passphrase_files_open_paths(
    size: int,
    steps: list[tuple[str, int, int]],
    key_bytes: bytes,
    key_file: Path,
    passphrase_file: Path,
    tmp_path: Path,
) -> None:
    plain = os.urandom(size)
    (tmp_path / "k.kst").write_bytes(seal_file(plain, key_bytes))
    (tmp_path / "p.kst").write_bytes(seal_file(plain, passphrase=PASSPHRASE))
    with kstream.open(tmp_path / "k.kst", key_file=key_file) as f:
        run_model(f, plain, steps)
    with kstream.open(str(tmp_path / "p.kst"), "rb", passphrase_file=passphrase_file) as f:
        run_model(f, plain, steps)
    with kstream.open(tmp_path / "p.kst", passphrase=PASSPHRASE.decode()) as f:
        assert f.read() == plain


def test_a_read_inside_one_segment_decrypts_at_most_one(key_bytes: bytes) -> None:
    plain = os.urandom(40 * S)
    blob = seal_file(plain, key_bytes)
    rng = random.Random(1)
    with kstream.open(io.BytesIO(blob), key=kstream.Key(key_bytes), cache_segments=1) as f:
        for _ in range(300):
            index = rng.randrange(40)
            offset = index * S + rng.randrange(S - 8)
            before = f.segments_decrypted
            f.seek(offset)
            assert f.read(8) == plain[offset : offset + 8]
            assert f.segments_decrypted - before <= 1


def test_sequential_reads_decrypt_each_segment_once_and_the_cache_stays_bounded(
    key_bytes: bytes,
) -> None:
    plain = os.urandom(30 * S + 5)
    with kstream.open(
        io.BytesIO(seal_file(plain, key_bytes)), key=kstream.Key(key_bytes), cache_segments=3
    ) as f:
        got = b"".join(iter(lambda: f.read(S // 3), b""))
        assert got == plain
        # 31 segments, and the last twice: checked at open, then evicted by the time the
        # reads reach it
        assert f.segments_decrypted == 32
        assert len(f._body.cached()) <= 3
        f.seek(-S // 2, io.SEEK_CUR)  # a small backward seek is served from the cache
        f.read(S // 2)
        assert f.segments_decrypted == 32


def test_read_ahead_fetches_the_next_segments_for_a_sequential_reader(key_bytes: bytes) -> None:
    plain = os.urandom(20 * S)
    blob = seal_file(plain, key_bytes)
    with kstream.open(io.BytesIO(blob), key=kstream.Key(key_bytes)) as f:
        assert f.read(S) == plain[:S]  # from 0, where a reader starts: sequential
        assert set(f._body._ahead) == {1, 2}  # on their way while segment 0 was checked
        f._body._ahead[1][0].result()
        assert f.read(S) == plain[S : 2 * S] and 1 in f._body.cached()
        f.seek(10 * S + 3)  # a jump: no read-ahead, and what waited is dropped
        assert f.read(5) == plain[10 * S + 3 : 10 * S + 8]
        assert not f._body._ahead
        assert f.read() == plain[10 * S + 8 :]
    assert not f._body._ahead


def test_lines_read_on_with_read_ahead_and_each_segment_is_read_once(key_bytes: bytes) -> None:
    """readline peeks where it stands before it reads: a peek is not a jump."""
    text = b"".join(b"line %d\n" % i for i in range(12 * S // 8))
    with kstream.open(io.BytesIO(seal_file(text, key_bytes)), key=kstream.Key(key_bytes)) as f:
        fetched: list[int] = []
        real = f._body._read

        def read(index: int, parts: Any) -> int:
            fetched.append(index)
            return real(index, parts)

        f._body._read = read  # type: ignore[method-assign]
        assert b"".join(f) == text
        assert sorted(fetched) == sorted(set(fetched))  # none read twice
        assert set(fetched) >= set(range(f._body.count - 1))


@pytest.mark.parametrize(("cache_segments", "calls_wanted"), [(4, 1), (2, 2)])
def test_a_read_across_segments_in_consecutive_slots_is_one_cipher_call(
    cache_segments: int, calls_wanted: int, key_bytes: bytes
) -> None:
    """The last segment takes slot 0 at open and segment 0 the next free one; segment 1
    follows it in the slot after, unless the ring ends there (then two ranges)."""
    plain = os.urandom(6 * S)
    with kstream.open(
        io.BytesIO(seal_file(plain, key_bytes)),
        key=kstream.Key(key_bytes),
        cache_segments=cache_segments,
        read_ahead=False,
    ) as f:
        calls: list[int] = []
        real = f._body._decrypt

        def decrypt(cipher: Any, end: int, ranges: list[memoryview]) -> bytes:
            calls.append(len(ranges))
            return real(cipher, end, ranges)

        f._body._decrypt = decrypt  # type: ignore[method-assign]
        assert f.read(S + 10) == plain[: S + 10]
        assert calls == [calls_wanted]


def test_without_read_ahead_only_the_segments_read_are_fetched(key_bytes: bytes) -> None:
    plain = os.urandom(20 * S)
    with kstream.open(
        io.BytesIO(seal_file(plain, key_bytes)), key=kstream.Key(key_bytes), read_ahead=False
    ) as f:
        assert f.read(3 * S) == plain[: 3 * S]
        assert not f._body._ahead and f._body._worker is None
        assert f._body.cached() == [20, 0, 1, 2]  # the last (empty), checked at open


def test_a_sequential_reader_goes_on_with_one_cipher(key_bytes: bytes) -> None:
    """A read leaves its cipher at the plaintext offset where it ended: a read from there
    needs no new one; a jump starts one at the AES block that holds its first byte."""
    plain = os.urandom(12 * S)
    blob = bytearray(seal_file(plain, key_bytes))
    blob[HEADER_SIZE + 8 * (S + OVERHEAD) + 9] ^= 1  # segment 8's ciphertext
    with kstream.open(io.BytesIO(bytes(blob)), key=kstream.Key(key_bytes)) as f:
        opened: list[int] = []
        real = f._body._cipher_at

        def cipher_at(offset: int) -> Any:
            opened.append(offset)
            return real(offset)

        f._body._cipher_at = cipher_at
        assert f.read(5 * S + 3) == plain[: 5 * S + 3]
        assert f.read(S) == plain[5 * S + 3 : 6 * S + 3]
        assert opened == [0]
        f.seek(S // 2 + 5, io.SEEK_CUR)  # into the middle of an AES block
        assert f.read(10) == plain[6 * S + S // 2 + 8 : 6 * S + S // 2 + 18]
        with pytest.raises(IntegrityError):
            f.read_at(7 * S, 2 * S)  # segment 8 fails its check: nothing is decrypted
        assert f.read_at(9 * S, S) == plain[9 * S : 10 * S]
        assert f.read_at(10 * S, 7) == plain[10 * S : 10 * S + 7]
        assert opened == [0, 6 * S + S // 2, 9 * S]


@pytest.mark.parametrize("cache_segments", [1, 2])
def test_reads_that_span_more_segments_than_the_cache_holds(
    cache_segments: int, key_bytes: bytes
) -> None:
    """Segments a read holds are not reused under it; the ones that find no free slot are
    read into buffers of their own."""
    plain = os.urandom(9 * S + 5)
    with kstream.open(
        io.BytesIO(seal_file(plain, key_bytes)),
        key=kstream.Key(key_bytes),
        cache_segments=cache_segments,
    ) as f:
        for start in (0, S - 1, 3 * S + 7, 0):
            assert f.read_at(start, 5 * S) == plain[start : start + 5 * S]
        buffer = bytearray(4 * S + 1)
        f.seek(2)
        assert f.readinto(buffer) == len(buffer) and buffer == plain[2 : 4 * S + 3]
        assert f.read() == plain[4 * S + 3 :]
        body = f._body
        assert len(body.cached()) <= cache_segments
        for future, _ in body._ahead.values():
            future.result()
        assert body._users == [len([i for i in body._ahead if body._placed[i] == slot])
                               for slot in range(cache_segments)]  # fmt: skip


@pytest.mark.parametrize("cache_segments", [1, 4])
def test_read_at_from_many_threads(cache_segments: int, key_bytes: bytes) -> None:
    plain = os.urandom(50 * S + 17)
    errors: list[BaseException] = []
    with kstream.open(
        io.BytesIO(seal_file(plain, key_bytes)),
        key=kstream.Key(key_bytes),
        cache_segments=cache_segments,
    ) as f:

        def work(seed: int) -> None:
            rng = random.Random(seed)
            try:
                for _ in range(200):
                    offset, size = rng.randrange(len(plain) + 10), rng.randrange(3 * S)
                    assert f.read_at(offset, size) == plain[offset : offset + size]
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors


def test_text_wrapper_and_iteration(key_bytes: bytes) -> None:
    text = "".join(f"line {i}\n" for i in range(100))
    blob = seal_file(text.encode(), key_bytes)
    with kstream.open(io.BytesIO(blob), key=kstream.Key(key_bytes)) as f:
        assert list(f) == [line.encode() for line in text.splitlines(keepends=True)]
        f.seek(0)
        assert io.TextIOWrapper(f, encoding="utf-8").read() == text


def test_closed_pickled_and_shown(key_bytes: bytes, tmp_path: Path) -> None:
    (tmp_path / "x.kst").write_bytes(seal_file(b"secret words", key_bytes))
    f = kstream.open(tmp_path / "x.kst", key=kstream.Key(key_bytes))
    assert repr(f) == f"<kstream.DecryptedFile '{tmp_path / 'x.kst'}' (12 bytes of plaintext)>"
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(f)
    with pytest.raises(io.UnsupportedOperation):
        f.fileno()
    f.close()
    f.close()
    assert f.closed
    for call in (f.read, f.tell, lambda: f.seek(0), lambda: f.read_at(0, 1)):
        with pytest.raises(ValueError, match="closed file"):
            call()


# --------------------------------------------------------------------------- damage


def decrypt_error(blob: bytes, tmp_path: Path, key_bytes: bytes) -> KstreamError:
    """What ``decrypt`` (the API, as the command line runs it) says about ``blob``."""
    src = tmp_path / "damaged.kst"
    src.write_bytes(blob)
    out = tmp_path / "out"
    with pytest.raises(KstreamError) as info:
        asyncio.run(
            kstream.decrypt_file(
                src, out, key=kstream.Key(key_bytes), backend="openssl", force=True
            )
        )
    return info.value


@pytest.mark.parametrize("k", [0, 1, 4])
@pytest.mark.parametrize("where", ["frame", "ciphertext", "tag"])
def test_a_damaged_segment_fails_only_the_reads_that_touch_it(
    k: int, where: str, key_bytes: bytes, tmp_path: Path
) -> None:
    plain = os.urandom(6 * S + 9)
    blob = bytearray(seal_file(plain, key_bytes))
    start = HEADER_SIZE + k * (S + OVERHEAD)
    offset = {"frame": 2, "ciphertext": 4 + 17, "tag": 4 + S + 3}[where]
    blob[start + offset] ^= 0x10
    want = decrypt_error(bytes(blob), tmp_path, key_bytes)
    with kstream.open(io.BytesIO(bytes(blob)), key=kstream.Key(key_bytes)) as f:
        for index in range(7):
            first = index * S
            if index == k:
                for offset, size in ((first, 1), (first + S - 1, 1), (first - 3, 10)):
                    if offset < 0:
                        continue
                    with pytest.raises(IntegrityError) as info:
                        f.read_at(offset, size)
                    assert str(info.value) == str(want)
                f.seek(max(first - 1, 0))
                with pytest.raises(IntegrityError):
                    f.read(2)
            else:
                assert f.read_at(first, S) == plain[first : first + S]
    if k:
        assert "the file was modified at segment" in str(want)


def test_a_damaged_last_segment_is_refused_at_open(key_bytes: bytes, tmp_path: Path) -> None:
    blob = bytearray(seal_file(os.urandom(3 * S + 5), key_bytes))
    blob[-1] ^= 1
    want = decrypt_error(bytes(blob), tmp_path, key_bytes)
    with pytest.raises(IntegrityError) as info:
        kstream.open(io.BytesIO(bytes(blob)), key=kstream.Key(key_bytes))
    assert str(info.value) == str(want)
    assert str(want).startswith("authentication failed: the file was modified at segment 3 ")


@pytest.mark.parametrize(
    "cut", [1, 5, OVERHEAD, OVERHEAD + 5, S + OVERHEAD, S + OVERHEAD + 1, 2 * (S + OVERHEAD)]
)
def test_truncated_files_are_refused_at_open_as_decrypt_refuses_them(
    cut: int, key_bytes: bytes, tmp_path: Path
) -> None:
    blob = seal_file(os.urandom(3 * S + 5), key_bytes)[:-cut]
    want = decrypt_error(blob, tmp_path, key_bytes)
    with pytest.raises(KstreamError) as info:
        kstream.open(io.BytesIO(blob), key=kstream.Key(key_bytes))
    assert (type(info.value), str(info.value)) == (type(want), str(want))


@pytest.mark.parametrize("extra", [1, 19, OVERHEAD, S + OVERHEAD, 2 * S + 3])
@pytest.mark.parametrize("size", [0, 3 * S, 3 * S + 5])
def test_extended_files_are_refused_at_open(
    extra: int, size: int, key_bytes: bytes, tmp_path: Path
) -> None:
    blob = seal_file(os.urandom(size), key_bytes) + os.urandom(extra)
    want = decrypt_error(blob, tmp_path, key_bytes)
    with pytest.raises(KstreamError) as info:
        kstream.open(io.BytesIO(blob), key=kstream.Key(key_bytes))
    assert isinstance(info.value, FormatError | IntegrityError)
    if isinstance(want, FormatError):
        assert str(info.value).startswith("trailing data after the end of the encrypted file")


@pytest.mark.parametrize("byte", [9, 12, 15, 16, 31])
def test_a_changed_header_is_refused_at_open(byte: int, key_bytes: bytes) -> None:
    blob = bytearray(seal_file(os.urandom(2 * S + 3), key_bytes))
    blob[byte] ^= 0x01
    with pytest.raises((IntegrityError, FormatError, KstreamError)):
        kstream.open(io.BytesIO(bytes(blob)), key=kstream.Key(key_bytes))


def test_another_key_and_a_wrong_passphrase_are_refused_at_open(key_bytes: bytes) -> None:
    blob = seal_file(os.urandom(2 * S + 3), key_bytes)
    with pytest.raises(IntegrityError, match=r"^authentication failed: wrong key or the file"):
        kstream.open(io.BytesIO(blob), key=kstream.Key.generate(256))
    with pytest.raises(kstream.InvalidKey, match="AES-128"):
        kstream.open(io.BytesIO(blob), key=kstream.Key.generate(128))
    phrase = seal_file(b"x" * 100, passphrase=PASSPHRASE)
    with pytest.raises(IntegrityError, match="wrong passphrase"):
        kstream.open(io.BytesIO(phrase), passphrase="other words")
    with pytest.raises(UsageError, match="protected by a passphrase"):
        kstream.open(io.BytesIO(phrase), key=kstream.Key(key_bytes))


def test_what_open_refuses(key_bytes: bytes, tmp_path: Path) -> None:
    key = kstream.Key(key_bytes)
    with pytest.raises(FormatError, match="input is empty"):
        kstream.open(io.BytesIO(b""), key=key)
    with pytest.raises(FormatError, match="not a kstream file"):
        kstream.open(io.BytesIO(b"plain text, not encrypted" * 3), key=key)
    with pytest.raises(UsageError, match="exactly one of"):
        kstream.open(io.BytesIO(b""))
    with pytest.raises(UsageError, match="exactly one of"):
        kstream.open(io.BytesIO(b""), key=key, passphrase="x")
    with pytest.raises(UsageError, match="mode must be 'rb' or 'wb'"):
        kstream.open(io.BytesIO(b""), "r", key=key)  # type: ignore[call-overload]
    with pytest.raises(UsageError, match="is a directory"):
        kstream.open(tmp_path, key=key)
    with pytest.raises(kstream.IOFailure, match="cannot open input"):
        kstream.open(tmp_path / "missing.kst", key=key)

    class Unseekable(io.RawIOBase):
        def readable(self) -> bool:
            return True

    with pytest.raises(UsageError, match="seekable"):
        kstream.open(Unseekable(), key=key)


def test_a_file_object_is_read_from_its_position(key_bytes: bytes) -> None:
    plain = os.urandom(100)
    stream = io.BytesIO(b"prefix" + seal_file(plain, key_bytes))
    stream.seek(6)
    with kstream.open(stream, key=kstream.Key(key_bytes)) as f:
        assert f.read() == plain
    assert not stream.closed  # the caller's object stays the caller's


class ReadOnly:
    """A seekable file object with ``read`` and no ``readinto``, returning short reads."""

    def __init__(self, data: bytes) -> None:
        self._f = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._f.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._f.seek(offset, whence)

    def read(self, n: int = -1) -> bytes:
        return self._f.read(min(n, 1000) if n >= 0 else n)


def test_a_file_object_without_readinto_and_with_short_reads(key_bytes: bytes) -> None:
    plain = os.urandom(3 * S + 11)
    with kstream.open(ReadOnly(seal_file(plain, key_bytes)), key=kstream.Key(key_bytes)) as f:
        assert f.read() == plain
        assert f.read_at(S - 3, S) == plain[S - 3 : 2 * S - 3]
