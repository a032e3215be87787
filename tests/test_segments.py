"""kstream.segments: the body format and its codec.

Through the whole API (test vectors, the length sweep against tests/reference.py, every
tampering that must fail) and directly (SealCodec/OpenCodec/RawCodec on small segments, so
each error and boundary is reached in microseconds and without a driver in between).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from reference import check_blob, ctr, seal
from streams import Collect, NoInPlace, encrypt_to, one

import kstream
from kstream.backends.base import BLOCK, CipherStream, counter_add
from kstream.backends.openssl import OpenSSLStream
from kstream.engine.iterate import IterSource
from kstream.errors import FormatError, IntegrityError, InvalidKey
from kstream.format import DEFAULT_SEGMENT as S
from kstream.format import (
    HEADER_SIZE,
    OVERHEAD,
    CipherSuite,
    Header,
    framed_size,
    plaintext_size,
    segment_count,
)
from kstream.keys.key import Key
from kstream.segments import (
    MAC_KEY_LABEL,
    Buffers,
    Codec,
    OpenCodec,
    RawCodec,
    SealCodec,
    apply_cipher,
    derive_mac,
    derive_mac_key,
    mac_key_info,
    parse_frame,
)

VECTORS = json.loads((Path(__file__).parent / "vectors" / "kstream-v1.json").read_text())
FRAMED = S + 20  # a full segment on disk: frame word + ciphertext + tag


def encrypt(key: Key, data: bytes, iv: bytes | None = None, backend: str = "openssl") -> bytes:
    sink = Collect()
    asyncio.run(encrypt_to(IterSource(one(data)), sink, key=key, header_iv=iv, backend=backend))
    return bytes(sink.data)


def decrypt(key: Key, blob: bytes) -> tuple[bytes, BaseException | None]:
    """Plaintext released before the end or the error, and the error (if any)."""
    out = bytearray()

    async def go() -> None:
        async for piece in kstream.decrypt_stream(one(blob), key=key, backend="openssl"):
            out.extend(piece)

    try:
        asyncio.run(go())
    except kstream.KstreamError as exc:
        return bytes(out), exc
    return bytes(out), None


def pattern(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_published_vectors(vector: dict[str, object]) -> None:
    key = Key(bytes.fromhex(str(vector["key"])))
    iv = bytes.fromhex(str(vector["iv"]))
    size = int(str(vector["plaintext_size"]))
    data = bytes.fromhex(str(vector["plaintext"])) if "plaintext" in vector else pattern(size)
    blob = encrypt(key, data, iv)
    check_blob(vector, blob, 64)
    assert decrypt(key, blob) == (data, None)


def test_readme_worked_example() -> None:
    vector = VECTORS["vectors"][1]
    assert vector["plaintext"] == b"hello, kstream!\n".hex()
    assert vector["file"] == (
        "4b53545245414d1a0103000100"
        "0fc000f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"
        "80000010"
        "fa65a1e14cbaa0a0291d9431215f421e"
        "f7f376f25bd86c579d3a3af3c108f977"
    )


@pytest.mark.parametrize("length", [0, 1, S - 1, S, S + 1, 2 * S, 2 * S + 1])
def test_length_sweep_round_trips_and_matches_reference(length: int) -> None:
    key = Key(os.urandom(16))
    data = os.urandom(length)
    iv = os.urandom(16)
    blob = encrypt(key, data, iv)
    header = Header(suite=CipherSuite.AES_128_CTR, iv=iv).encode()
    assert blob == seal(key.material(), header, data, S)
    assert decrypt(key, blob) == (data, None)
    segments = length // S + 1
    assert len(blob) == HEADER_SIZE + length + 20 * segments


DATA = pattern(2 * S + 1000)  # three segments: two full, one of 1000 bytes


@pytest.fixture(scope="module")
def sample() -> tuple[Key, bytes]:
    key = Key(bytes(range(32)))
    return key, encrypt(key, DATA)


def flip(blob: bytes, offset: int, bit: int = 0) -> bytes:
    out = bytearray(blob)
    out[offset] ^= 1 << bit
    return bytes(out)


def seg(blob: bytes, i: int) -> bytes:
    start = HEADER_SIZE + i * FRAMED
    return blob[start : start + FRAMED]


def modified(index: int, last: int | None = None, by: str = "key") -> str:
    """The message for segment ``index`` of a sample-like file failing after segment 0
    verified; ``last``: the segment's last byte, when it is not a full one."""
    first = HEADER_SIZE + index * FRAMED
    end = first + FRAMED - 1 if last is None else last
    return (
        f"authentication failed: the file was modified at segment {index} (bytes {first} "
        f"to {end} of the file); the {by} is right: segment 0 verified with it"
    )


def expect(blob: bytes, key: Key, error: type[Exception], message: str, released: int = 0) -> None:
    out, exc = decrypt(key, blob)
    assert isinstance(exc, error), exc
    assert message in str(exc), str(exc)
    assert out == DATA[:released]  # only verified segments' plaintext was released


@pytest.mark.parametrize("offset", range(HEADER_SIZE))
def test_bit_flip_in_every_header_byte(sample: tuple[Key, bytes], offset: int) -> None:
    key, blob = sample
    for bit in (0, 7):
        out, exc = decrypt(key, flip(blob, offset, bit))
        assert isinstance(exc, FormatError | IntegrityError | InvalidKey), (offset, bit, exc)
        assert out == b""


@pytest.mark.parametrize(
    ("where", "released"),
    [
        (HEADER_SIZE + 4, 0),  # first ciphertext byte of segment 0
        (HEADER_SIZE + FRAMED + 4 + 12345, S),  # inside segment 1
        (HEADER_SIZE + 2 * FRAMED + 4 + 999, 2 * S),  # last byte of the final segment
    ],
)
def test_bit_flip_in_body(sample: tuple[Key, bytes], where: int, released: int) -> None:
    """Segment 0 failing may be the key's fault; a later one, once segment 0 verified with
    the same key, can only be the file's, and the message says where."""
    key, blob = sample
    index = released // S
    message = (
        "authentication failed: wrong key or the file was modified (segment 0)"
        if index == 0
        else modified(index, len(blob) - 1 if index == 2 else None)
    )
    expect(flip(blob, where), key, IntegrityError, message, released)


def test_bit_flip_in_tag_and_frame(sample: tuple[Key, bytes]) -> None:
    key, blob = sample
    expect(flip(blob, HEADER_SIZE + FRAMED - 1), key, IntegrityError, "(segment 0)")
    expect(flip(blob, HEADER_SIZE + FRAMED, 7), key, IntegrityError, modified(1), S)
    expect(flip(blob, HEADER_SIZE + 3), key, IntegrityError, "(segment 0)")


def test_segments_swapped_or_duplicated(sample: tuple[Key, bytes]) -> None:
    key, blob = sample
    head, s0, s1, s2 = blob[:HEADER_SIZE], seg(blob, 0), seg(blob, 1), seg(blob, 2)
    expect(head + s1 + s0 + s2, key, IntegrityError, "(segment 0)")
    expect(head + s0 + s0 + s1 + s2, key, IntegrityError, modified(1), S)


def test_truncation(sample: tuple[Key, bytes]) -> None:
    key, blob = sample
    head, s0, s1 = blob[:HEADER_SIZE], seg(blob, 0), seg(blob, 1)
    expect(head + s0 + s1, key, FormatError, "file is truncated", 2 * S)
    expect(head, key, FormatError, "file is truncated")
    expect(blob[:-1], key, FormatError, "file is truncated: segment 2 is incomplete", 2 * S)
    expect(blob[: HEADER_SIZE + 100], key, FormatError, "segment 0 is incomplete")


def test_appended_bytes(sample: tuple[Key, bytes]) -> None:
    """Data after the final segment withholds that segment's plaintext too: the codec
    checks for it before releasing anything of the final segment."""
    key, blob = sample
    expect(
        blob + b"x",
        key,
        FormatError,
        "trailing data after the end of the encrypted file: 1 or more bytes were appended",
        2 * S,
    )
    expect(blob + seg(blob, 0), key, FormatError, "trailing data", 2 * S)


def test_header_of_another_file(sample: tuple[Key, bytes]) -> None:
    key, blob = sample
    other = encrypt(key, DATA)
    expect(other[:HEADER_SIZE] + blob[HEADER_SIZE:], key, IntegrityError, "(segment 0)")


def test_wrong_key(sample: tuple[Key, bytes]) -> None:
    _, blob = sample
    expect(
        blob,
        Key(os.urandom(32)),
        IntegrityError,
        "authentication failed: wrong key or the file was modified (segment 0)",
    )


def test_empty_plaintext_has_a_final_segment() -> None:
    key = Key(os.urandom(16))
    blob = encrypt(key, b"")
    assert len(blob) == HEADER_SIZE + 20 and blob[HEADER_SIZE : HEADER_SIZE + 4] == b"\x80\0\0\0"
    assert decrypt(key, blob) == (b"", None)
    _out, exc = decrypt(key, blob[:HEADER_SIZE])
    assert isinstance(exc, FormatError) and "no segment follows the header" in str(exc)


def test_cli_reports_tampering_and_leaves_no_output(tmp_path: Path) -> None:
    import subprocess
    import sys

    key = tmp_path / "k"
    Key(bytes(range(32))).save(key)
    blob = encrypt(Key(bytes(range(32))), DATA)
    (tmp_path / "bad").write_bytes(flip(blob, HEADER_SIZE + FRAMED + 10))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kstream",
            "decrypt",
            "-q",
            "-k",
            str(key),
            str(tmp_path / "bad"),
            str(tmp_path / "out"),
        ],
        capture_output=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.decode() == f"kstream: error: {modified(1)}\n"
    assert not (tmp_path / "out").exists()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kstream",
            "decrypt",
            "-q",
            "-k",
            str(key),
            str(tmp_path / "bad"),
            "-",
        ],
        capture_output=True,
    )
    assert proc.returncode == 1 and proc.stdout == DATA[:S]  # stops at the bad segment


# --- the codec itself, on small segments -------------------------------------------------------

SMALL = 64  # a segment of four AES blocks: many segments from a few hundred bytes
KEY16 = bytes(range(16))
IV = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
SMALL_HEADER = Header(suite=CipherSuite.AES_128_CTR, iv=IV, auth_param=SMALL)


def _mac() -> AESGCM:
    return derive_mac(KEY16, SMALL_HEADER)


def _cipher(in_place: bool, first_segment: int = 0) -> CipherStream:
    iv = counter_add(IV, first_segment * SMALL // 16)
    return OpenSSLStream(KEY16, iv) if in_place else NoInPlace(KEY16, iv, blockwise=True)


def drive(codec: Codec, data: bytes) -> bytes:
    """What a driver does: one unit per call into a buffer with BLOCK to spare; a short
    read (possibly empty) ends the input."""
    out = bytearray()
    pos = 0
    while True:
        n = min(codec.unit, len(data) - pos)
        buf = bytearray(codec.unit + BLOCK)
        buf[:n] = data[pos : pos + n]
        pos += n
        with memoryview(buf) as view:
            for part in codec.process(view, n, n < codec.unit):
                out += part
        if n < codec.unit:
            return bytes(out)


def small_body(data: bytes) -> bytes:
    return seal(KEY16, SMALL_HEADER.encode(), data, SMALL)[HEADER_SIZE:]


@pytest.mark.parametrize("in_place", [True, False], ids=["in-place", "no-update_into"])
@pytest.mark.parametrize("length", [0, 1, 15, SMALL - 1, SMALL, SMALL + 1, 5 * SMALL + 7])
def test_codecs_match_the_reference(length: int, in_place: bool) -> None:
    """Seal gives docs/format.md's body byte for byte, open inverts it, raw is bare CTR, with an
    in-place cipher and with one that only has ``update``: one codec for both."""
    data = os.urandom(length)
    body = drive(SealCodec(_cipher(in_place), _mac(), SMALL), data)
    assert body == small_body(data)
    assert len(body) == framed_size(length, SMALL)
    assert drive(OpenCodec(_cipher(in_place), _mac(), SMALL), body) == data
    assert drive(RawCodec(_cipher(in_place), SMALL), data) == ctr(KEY16, IV, data)


@pytest.mark.parametrize("in_place", [True, False], ids=["in-place", "no-update_into"])
def test_process_pieces_equals_process(in_place: bool) -> None:
    """Encrypting straight from the caller's pieces (the iterate driver) gives the same
    segments as encrypting one joined buffer (the fd and ranges drivers)."""
    data = os.urandom(3 * SMALL + 5)
    seal_codec = SealCodec(_cipher(in_place), _mac(), SMALL)
    raw_codec = RawCodec(_cipher(in_place), SMALL)
    sealed, raw = bytearray(), bytearray()
    for start in range(0, len(data) + 1, SMALL):
        chunk = data[start : start + SMALL]
        pieces = [chunk[:3], chunk[3:40], chunk[40:]]  # uneven, some empty at the end
        last = len(chunk) < SMALL
        sealed += seal_codec.process_pieces(pieces, len(chunk), last)
        raw += raw_codec.process_pieces(pieces, len(chunk), last)
    assert bytes(sealed) == small_body(data)
    assert bytes(raw) == ctr(KEY16, IV, data)
    assert seal_codec.index == raw_codec.index == 4


def test_seal_of_ciphertext_from_elsewhere() -> None:
    """``seal`` frames ciphertext made by a cipher that pulled its input itself (splice)."""
    data = os.urandom(2 * SMALL + 3)
    ct = ctr(KEY16, IV, data)
    codec = SealCodec(_cipher(True), _mac(), SMALL)
    parts = [
        *codec.seal(ct[:SMALL], False),
        *codec.seal(ct[SMALL : 2 * SMALL], False),
        *codec.seal(ct[2 * SMALL :], True),
    ]
    assert b"".join(parts) == small_body(data)


def test_codec_from_a_later_segment() -> None:
    """A parallel range starts mid-file: its codec's index and counter start there."""
    data = os.urandom(4 * SMALL + 9)
    body = small_body(data)
    unit = SMALL + OVERHEAD
    tail = drive(SealCodec(_cipher(True, 2), _mac(), SMALL, first_index=2), data[2 * SMALL :])
    assert tail == body[2 * unit :]
    opener = OpenCodec(_cipher(False, 2), _mac(), SMALL, first_index=2)
    assert drive(opener, body[2 * unit :]) == data[2 * SMALL :]
    assert opener.index == 5


def test_sizes_are_inverse() -> None:
    """framed_size, plaintext_size and segment_count agree with each other and with the
    reference; sizes no writer produces give None."""
    for n in range(0, 4 * SMALL + 2):
        body = framed_size(n, SMALL)
        assert plaintext_size(body, SMALL) == n
        assert segment_count(body, SMALL) == n // SMALL + 1
    assert framed_size(SMALL, SMALL) == len(small_body(bytes(SMALL))) == SMALL + 2 * OVERHEAD
    impossible = [0, OVERHEAD - 1, SMALL + OVERHEAD, SMALL + OVERHEAD + OVERHEAD - 1]
    for body in impossible:
        assert plaintext_size(body, SMALL) is None and segment_count(body, SMALL) is None


def test_mac_key_derivation_is_hkdf_expand() -> None:
    """derive_mac is HKDF-Expand, and the one-HMAC formula (what the kernel computes for a
    keyring key) gives the same key."""
    import hmac

    info = mac_key_info(SMALL_HEADER)
    assert info == MAC_KEY_LABEL + SMALL_HEADER.encode() + b"\x01"
    one_hmac = hmac.new(KEY16, info, hashlib.sha256).digest()
    assert derive_mac_key(Key(KEY16), SMALL_HEADER) == one_hmac
    nonce = bytes(12)
    assert derive_mac(KEY16, SMALL_HEADER).encrypt(nonce, b"", b"x") == (
        AESGCM(one_hmac).encrypt(nonce, b"", b"x")
    )


def test_apply_cipher_refuses_a_cipher_that_holds_back_whole_blocks() -> None:
    """A non-final segment is whole blocks: output held back there would be lost silently."""

    class Lossy(NoInPlace):
        def update(self, data: bytes | bytearray | memoryview) -> bytes:
            return super().update(data)[:-16]

    buf = bytearray(SMALL + BLOCK)
    with memoryview(buf) as view, pytest.raises(RuntimeError, match="held back 16 bytes"):
        apply_cipher(Lossy(KEY16, IV), view[:SMALL], view, False)


# --- OpenCodec's errors: exact messages, nothing of the failing segment released ---------------


def open_segment(
    body: bytes, n: int | None = None, index: int = 0
) -> tuple[Buffers | BaseException, bytes, bytes]:
    """Run one ``process`` call of an opener at ``index`` on ``body[:n]`` (n defaults to
    ``min(unit, len(body))``); return its result or error, the buffer before and after."""
    opener = OpenCodec(_cipher(True, index), _mac(), SMALL, first_index=index)
    n = min(opener.unit, len(body)) if n is None else n
    buf = bytearray(opener.unit + BLOCK)
    buf[:n] = body[:n]
    before = bytes(buf)
    try:
        result: Buffers | BaseException = opener.process(memoryview(buf), n, n < opener.unit)
    except (FormatError, IntegrityError) as exc:
        result = exc
    return result, before, bytes(buf)


UNIT = SMALL + OVERHEAD
BODY = small_body(bytes(range(200)) + bytes(2 * SMALL - 200 + 2 * SMALL + 9))  # 5 segments


def segment_at(i: int) -> bytes:
    return BODY[i * UNIT : (i + 1) * UNIT]


@pytest.mark.parametrize(
    ("body", "index", "error", "message"),
    [
        (b"", 0, FormatError, "file is truncated: no segment follows the header"),
        (
            b"",
            3,
            FormatError,
            "file is truncated: it ends after segment 2 without the final segment",
        ),
        (BODY[:1], 0, FormatError, "file is truncated: segment 0 is incomplete"),
        (BODY[:3], 0, FormatError, "file is truncated: segment 0 is incomplete"),
        (BODY[:4], 0, FormatError, "file is truncated: segment 0 is incomplete"),
        (BODY[: UNIT - 1], 0, FormatError, "file is truncated: segment 0 is incomplete"),
        (segment_at(4)[:-1], 4, FormatError, "file is truncated: segment 4 is incomplete"),
        (
            segment_at(4) + b"xyz",
            4,
            FormatError,
            "trailing data after the end of the encrypted file: 3 or more bytes were appended",
        ),
        (
            segment_at(1),
            0,
            IntegrityError,
            "authentication failed: wrong key or the file was modified (segment 0)",
        ),
        (
            segment_at(4),
            3,
            IntegrityError,
            "authentication failed: wrong key or the file was modified (segment 3)",
        ),
        (
            segment_at(4)[:-1] + bytes([segment_at(4)[-1] ^ 1]),
            4,
            IntegrityError,
            "authentication failed: wrong key or the file was modified (segment 4)",
        ),
    ],
    ids=[
        "empty",
        "no-final",
        "frame-1",
        "frame-3",
        "frame-only",
        "partial-segment",
        "partial-last",
        "trailing",
        "moved-segment",
        "moved-last",
        "bad-tag",
    ],
)
def test_open_codec_errors(body: bytes, index: int, error: type[Exception], message: str) -> None:
    """Each way a body can be damaged gets its own exact message, raised before anything of
    the segment is released: the buffer is not even decrypted in place."""
    result, before, after = open_segment(body, index=index)
    assert isinstance(result, error), result
    assert str(result) == message
    assert after == before


def test_open_codec_rejects_frames_no_writer_makes() -> None:
    """A length over S, or a short segment not flagged last, fails as tampering."""
    seg0 = segment_at(0)
    too_long = (0x80000000 | (SMALL + 1)).to_bytes(4, "big") + seg0[4:]
    short_not_last = (SMALL - 16).to_bytes(4, "big") + seg0[4:]
    for body in (too_long, short_not_last):
        result, before, after = open_segment(body)
        assert str(result) == (
            "authentication failed: wrong key or the file was modified (segment 0)"
        )
        assert after == before
    with pytest.raises(IntegrityError, match=r"\(segment 7\)$"):
        parse_frame(too_long, 0, SMALL, 7)
    assert parse_frame(seg0, 0, SMALL, 0) == (False, SMALL)


def test_open_codec_releases_verified_segments_in_order() -> None:
    """Segments before the damage are released, then the error names the damaged one."""
    opener = OpenCodec(_cipher(False), _mac(), SMALL)
    released = bytearray()
    damaged = bytearray(BODY)
    damaged[2 * UNIT + 10] ^= 1
    with pytest.raises(
        IntegrityError,
        match=r"modified at segment 2 \(bytes 168 to 251 of the "
        r"file\); the key is right: segment 0 verified with it$",
    ):
        for i in range(5):
            buf = bytearray(UNIT + BLOCK)
            chunk = damaged[i * UNIT : (i + 1) * UNIT]
            buf[: len(chunk)] = chunk
            for part in opener.process(memoryview(buf), len(chunk), len(chunk) < UNIT):
                released += part
    assert bytes(released) == (bytes(range(200)) + bytes(2 * SMALL))[: 2 * SMALL]
    assert opener.index == 2


# --- the same message from every driver ---------------------------------------------------------


async def _error_of(coro: object) -> str:
    with pytest.raises(IntegrityError) as info:
        await coro  # type: ignore[misc]
    return str(info.value)


async def _every_driver(tmp_path: Path, blob: bytes, **secret: Any) -> dict[str, str]:
    """The error each driver gives for ``blob``: the async-iterable driver, the fd stream
    driver (into /dev/null, a stream output), and parallel ranges with 1 to 6 jobs (with 6,
    each of the file's segments is a range of its own: segment 2's range learns that the key
    is right only from the range that verified segment 0)."""
    (tmp_path / "c").write_bytes(blob)

    async def drain() -> None:
        async for _ in kstream.decrypt_stream(one(blob), backend="openssl", **secret):
            pass

    errors = {
        "iterable": await _error_of(drain()),
        "stream": await _error_of(
            kstream.decrypt_file(tmp_path / "c", "/dev/null", backend="openssl", **secret)
        ),
    }
    for jobs in (1, 2, 3, 6):
        errors[f"ranges-{jobs}"] = await _error_of(
            kstream.decrypt_file(
                tmp_path / "c", tmp_path / "d", backend="openssl", jobs=jobs, **secret
            )
        )
        assert not (tmp_path / "d").exists()
    return errors


@pytest.mark.parametrize("by", ["key", "passphrase"])
async def test_every_driver_says_the_key_is_right_after_segment_0(tmp_path: Path, by: str) -> None:
    data = os.urandom(5 * S + 3)  # six segments
    secret: dict[str, Any] = (
        {"key": Key(os.urandom(32))} if by == "key" else {"passphrase": "correct horse"}
    )
    sink = Collect()
    await encrypt_to(
        IterSource(one(data)),
        sink,
        backend="openssl",
        work_factor=10 if by == "passphrase" else None,
        **secret,
    )
    blob = bytes(sink.data)
    head = len(blob) - len(data) - 6 * OVERHEAD  # 32, or 52 with a passphrase block

    later = flip(flip(blob, head + 4 * FRAMED + 99), head + 2 * FRAMED + 99)
    first = head + 2 * FRAMED
    assert set((await _every_driver(tmp_path, later, **secret)).values()) == {
        f"authentication failed: the file was modified at segment 2 (bytes {first} to "
        f"{first + FRAMED - 1} of the file); the {by} is right: segment 0 verified with it"
    }

    # A frame word that no writer makes, in the short final segment: the same kind of message.
    last = head + 5 * FRAMED
    framed = flip(blob, last)  # length 2**24 + 3: more than a segment holds
    assert set((await _every_driver(tmp_path, framed, **secret)).values()) == {
        f"authentication failed: the file was modified at segment 5 (bytes {last} to "
        f"{len(blob) - 1} of the file); the {by} is right: segment 0 verified with it"
    }

    # Segment 0 itself: nothing has shown that the key is right, so it may be the key.
    early = flip(flip(blob, head + 3 * FRAMED + 5), head + 5)
    assert set((await _every_driver(tmp_path, early, **secret)).values()) == {
        f"authentication failed: wrong {by} or the file was modified (segment 0)"
    }
