"""Header encoding and every way parsing can refuse a file."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kstream.errors import FormatError
from kstream.format import (
    DEFAULT_SEGMENT,
    FLAG_PASSPHRASE,
    HEADER_SIZE,
    KDF_BLOCK_SIZE,
    MAGIC,
    AuthScheme,
    BodyLayout,
    CipherSuite,
    Header,
    KdfParams,
    framed_size,
    header_size,
    segment_count,
    walk_frames,
)

IV = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
# AES-256-CTR, GMAC segments of 1008 KiB (0x000fc000), IV 00 01 .. 0f.
EXAMPLE = bytes.fromhex("4b53545245414d1a01030001000fc000000102030405060708090a0b0c0d0e0f")


def test_encode_matches_documented_example() -> None:
    assert Header(suite=CipherSuite.AES_256_CTR, iv=IV).encode() == EXAMPLE
    assert HEADER_SIZE == 32 == len(EXAMPLE)


@given(st.sampled_from(list(CipherSuite)), st.binary(min_size=16, max_size=16), st.binary())
def test_roundtrip_ignores_trailing_body(suite: CipherSuite, iv: bytes, body: bytes) -> None:
    parsed = Header.parse(Header(suite=suite, iv=iv).encode() + body)
    assert (parsed.suite, parsed.iv, parsed.version) == (suite, iv, 1)
    assert (parsed.auth_scheme, parsed.auth_param) == (AuthScheme.GMAC_SEGMENTS, DEFAULT_SEGMENT)


@pytest.mark.parametrize(
    ("suite", "size", "label"),
    [
        (CipherSuite.AES_128_CTR, 16, "AES-128-CTR"),
        (CipherSuite.AES_192_CTR, 24, "AES-192-CTR"),
        (CipherSuite.AES_256_CTR, 32, "AES-256-CTR"),
    ],
)
def test_suite_sizes(suite: CipherSuite, size: int, label: str) -> None:
    assert suite.key_size == size and suite.label == label
    assert CipherSuite.for_key_size(size) is suite


def _patched(base: bytes, offset: int, value: int) -> bytes:
    data = bytearray(base)
    data[offset] = value
    return bytes(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a kstream file"),
        (b"PK\x03\x04" + bytes(60), "not a kstream file"),
        (b"Salted__" + bytes(40), "not a kstream file"),
        (MAGIC[:5], "truncated"),
        (MAGIC, "truncated"),
        (EXAMPLE[:31], "truncated: the kstream header needs 32 bytes, found 31"),
        (_patched(EXAMPLE, 8, 2), "unsupported kstream format version 2"),
        (_patched(EXAMPLE, 8, 0), "unsupported kstream format version 0"),
        (_patched(EXAMPLE, 9, 4), "unknown cipher suite id 4"),
        (_patched(EXAMPLE, 9, 0), "unknown cipher suite id 0"),
        (_patched(EXAMPLE, 10, 2), "header flags 0x02"),
        (_patched(EXAMPLE, 10, 0x81), "header flags 0x81"),
        (_patched(EXAMPLE, 10, 1), "passphrase block needs 52 bytes, found 32"),
        (_patched(EXAMPLE, 11, 2), "authentication scheme 2, which this kstream does not support"),
        (_patched(EXAMPLE, 11, 0), "file is not authenticated"),
        (_patched(EXAMPLE, 15, 1), "segment size 1032193 is not a multiple of 16"),
        (_patched(EXAMPLE, 12, 0x10), "between 16 and 4194304"),
        (bytes(EXAMPLE[:12]) + bytes(4) + EXAMPLE[16:], "segment size 0"),
    ],
)
def test_parse_errors_are_specific(data: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        Header.parse(data)


def test_iv_length_is_validated() -> None:
    with pytest.raises(ValueError, match="IV must be 16 bytes"):
        Header(suite=CipherSuite.AES_128_CTR, iv=b"short")


def test_replace_and_make_validate_as_the_constructor_does() -> None:
    """NamedTuple's own ``_replace``/``_make`` build the tuple without ``__new__``."""
    header = Header(suite=CipherSuite.AES_128_CTR, iv=IV)
    assert header._replace(auth_param=32) == Header(CipherSuite.AES_128_CTR, IV, auth_param=32)
    with pytest.raises(ValueError, match="IV must be 16 bytes"):
        header._replace(iv=b"short")
    with pytest.raises(ValueError, match="passphrase flag needs a passphrase block"):
        Header._make([CipherSuite.AES_128_CTR, IV, 1, FLAG_PASSPHRASE, 1, 32, None])
    params = KdfParams(log2n=15, salt=bytes(16))
    assert type(params._replace(log2n=16)) is KdfParams
    with pytest.raises(ValueError, match="unsupported scrypt parameters"):
        params._replace(r=99)


@given(st.binary(max_size=64))
def test_parse_raises_only_format_error(data: bytes) -> None:
    try:
        header = Header.parse(data)
    except FormatError:
        return
    assert header.encode() == data[: header.size]


# --- the passphrase block (flag 0x01) -----------------------------------------------------

SALT = bytes(range(0x40, 0x50))
# EXAMPLE with flag 01, then: scrypt (01), log2 N 18 (0x12), r 8, p 1, salt 40 41 .. 4f.
PASSPHRASE_EXAMPLE = bytes.fromhex(
    "4b53545245414d1a"
    "01"
    "03"
    "01"
    "01"
    "000fc000"
    "000102030405060708090a0b0c0d0e0f"
    "01"
    "12"
    "08"
    "01"
    "404142434445464748494a4b4c4d4e4f"
)


def test_passphrase_block_matches_documented_layout() -> None:
    header = Header(suite=CipherSuite.AES_256_CTR, iv=IV, kdf=KdfParams(log2n=18, salt=SALT))
    assert header.flags == FLAG_PASSPHRASE
    assert header.encode() == PASSPHRASE_EXAMPLE
    assert header.size == len(PASSPHRASE_EXAMPLE) == HEADER_SIZE + KDF_BLOCK_SIZE == 52
    assert header_size(PASSPHRASE_EXAMPLE[:HEADER_SIZE]) == 52
    assert header_size(EXAMPLE) == 32
    parsed = Header.parse(PASSPHRASE_EXAMPLE + b"body")
    assert parsed == header
    assert parsed.kdf is not None and parsed.kdf.memory == 256 << 20


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (PASSPHRASE_EXAMPLE[:51], "passphrase block needs 52 bytes, found 51"),
        (
            _patched(PASSPHRASE_EXAMPLE, 32, 2),
            "key derivation function 2, which this kstream does not",
        ),
        (_patched(PASSPHRASE_EXAMPLE, 32, 0), "key derivation function 0"),
        (_patched(PASSPHRASE_EXAMPLE, 33, 0), "log2 N = 0"),
        (_patched(PASSPHRASE_EXAMPLE, 34, 9), "r = 9"),
        (_patched(PASSPHRASE_EXAMPLE, 34, 0), "r = 0"),
        (_patched(PASSPHRASE_EXAMPLE, 35, 2), "p = 2"),
        (_patched(PASSPHRASE_EXAMPLE, 34, 1), "log2 N = 18, r = 1"),  # RFC 7914: N < 2^(16 r)
        (
            _patched(PASSPHRASE_EXAMPLE, 9, 1),
            "a passphrase file is AES-256-CTR, this header says AES-128",
        ),
    ],
)
def test_passphrase_block_errors_are_specific(data: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        Header.parse(data)


def test_passphrase_flag_and_block_go_together() -> None:
    with pytest.raises(ValueError, match="passphrase flag needs a passphrase block"):
        Header(suite=CipherSuite.AES_256_CTR, iv=IV, flags=FLAG_PASSPHRASE)
    with pytest.raises(ValueError, match="salt must be 16 bytes"):
        KdfParams(log2n=18, salt=b"short")


# --- walking the frame words of a body -------------------------------------------------------

SEG = 32  # two AES blocks: small enough for hypothesis to build many-segment bodies


def _body(plaintext: int, segment: int = SEG) -> bytes:
    """A well-framed body: words as the writer makes them, ciphertext and tags as filler."""
    out = bytearray()
    full, rest = divmod(plaintext, segment)
    for i in range(full + 1):
        size = segment if i < full else rest
        word = size | (1 << 31 if i == full else 0)
        out += word.to_bytes(4, "big") + bytes([i % 251]) * size + b"\xee" * 16
    return bytes(out)


def _walk(body: bytes, segment: int = SEG) -> tuple[BodyLayout, list[int]]:
    asked: list[int] = []

    def word_at(offset: int) -> bytes:
        asked.append(offset)
        return body[offset : offset + 4]

    return walk_frames(len(body), segment, word_at), asked


@given(st.integers(0, 10 * SEG))
def test_walk_of_an_intact_body(plaintext: int) -> None:
    body = _body(plaintext)
    assert len(body) == framed_size(plaintext, SEG)
    layout, asked = _walk(body)
    assert layout == BodyLayout(segment_count(len(body), SEG) or 0, plaintext)
    assert asked == [i * (SEG + 20) for i in range(plaintext // SEG + 1)]  # one word each


@given(st.integers(0, 6 * SEG), st.data())
def test_walk_of_a_truncated_body(plaintext: int, data: st.DataObject) -> None:
    body = _body(plaintext)
    keep = data.draw(st.integers(0, len(body) - 1))
    with pytest.raises(FormatError, match="^file is truncated: "):
        _walk(body[:keep])


@given(st.integers(0, 6 * SEG), st.binary(min_size=1, max_size=3 * SEG))
def test_walk_counts_appended_bytes(plaintext: int, extra: bytes) -> None:
    n = len(extra)
    message = (
        f"trailing data after the end of the encrypted file: {n} "
        f"{'bytes were' if n > 1 else 'byte was'} appended"
    )
    with pytest.raises(FormatError) as info:
        _walk(_body(plaintext) + extra)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("keep", "message"),
    [
        (0, "file is truncated: no segment follows the header"),
        (3, "file is truncated: segment 0 is incomplete"),
        (4 + SEG + 15, "file is truncated: segment 0 is incomplete"),
        (SEG + 20, "file is truncated: it ends after segment 0 without the final segment"),
        (SEG + 22, "file is truncated: segment 1 is incomplete"),
    ],
)
def test_walk_names_the_truncation_as_decrypt_does(keep: int, message: str) -> None:
    with pytest.raises(FormatError) as info:
        _walk(_body(SEG + 5)[:keep])
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("word", "why"),
    [
        (SEG - 16, "a short segment not flagged last"),
        ((1 << 31) | SEG, "a full segment flagged last"),
        ((1 << 31) | (SEG + 16), "a last segment longer than the segment size"),
        (SEG + 16, "a segment longer than the segment size"),
    ],
)
def test_walk_refuses_a_word_no_writer_produces(word: int, why: str) -> None:
    body = bytearray(_body(3 * SEG + 1))
    body[SEG + 20 : SEG + 24] = word.to_bytes(4, "big")
    with pytest.raises(FormatError) as info:
        _walk(bytes(body))
    assert str(info.value) == (
        f"file is damaged: segment 1 starts with length word "
        f"0x{word:08x}, which no kstream writer produces (segments of "
        f"{SEG} bytes); the file was modified"
    ), why
