"""Authenticated segments: test vectors, the length sweep, and every tampering that must fail."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path

import pytest
from kstream.pipeline import IterSource
from reference import seal
from streams import Collect, one

import kstream
from kstream.api import encrypt_to
from kstream.errors import FormatError, IntegrityError, InvalidKey
from kstream.format import DEFAULT_SEGMENT as S
from kstream.format import HEADER_SIZE, CipherSuite, Header
from kstream.keys import Key

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
    if "file" in vector:
        assert blob.hex() == vector["file"]
    else:
        assert len(blob) == vector["file_size"]
        assert blob[:64].hex() == vector["file_head"]
        assert hashlib.sha256(blob).hexdigest() == vector["file_sha256"]
    assert decrypt(key, blob) == (data, None)


def test_readme_worked_example() -> None:
    vector = VECTORS["vectors"][1]
    assert vector["plaintext"] == b"hello, kstream!\n".hex()
    assert vector["file"] == (
        "4b53545245414d1a0103000100" "0fc000f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"
        "80000010" "fa65a1e14cbaa0a0291d9431215f421e" "f7f376f25bd86c579d3a3af3c108f977"
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
    return blob[start:start + FRAMED]


def expect(blob: bytes, key: Key, error: type[Exception], message: str,
           released: int = 0) -> None:
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


@pytest.mark.parametrize(("where", "released"), [
    (HEADER_SIZE + 4, 0),  # first ciphertext byte of segment 0
    (HEADER_SIZE + FRAMED + 4 + 12345, S),  # inside segment 1
    (HEADER_SIZE + 2 * FRAMED + 4 + 999, 2 * S),  # last byte of the final segment
])
def test_bit_flip_in_body(sample: tuple[Key, bytes], where: int, released: int) -> None:
    key, blob = sample
    expect(flip(blob, where), key, IntegrityError,
           f"authentication failed: wrong key or the file was modified (segment "
           f"{released // S})", released)


def test_bit_flip_in_tag_and_frame(sample: tuple[Key, bytes]) -> None:
    key, blob = sample
    expect(flip(blob, HEADER_SIZE + FRAMED - 1), key, IntegrityError, "(segment 0)")
    expect(flip(blob, HEADER_SIZE + FRAMED, 7), key, IntegrityError, "(segment 1)", S)
    expect(flip(blob, HEADER_SIZE + 3), key, IntegrityError, "(segment 0)")


def test_segments_swapped_or_duplicated(sample: tuple[Key, bytes]) -> None:
    key, blob = sample
    head, s0, s1, s2 = blob[:HEADER_SIZE], seg(blob, 0), seg(blob, 1), seg(blob, 2)
    expect(head + s1 + s0 + s2, key, IntegrityError, "(segment 0)")
    expect(head + s0 + s0 + s1 + s2, key, IntegrityError, "(segment 1)", S)


def test_truncation(sample: tuple[Key, bytes]) -> None:
    key, blob = sample
    head, s0, s1 = blob[:HEADER_SIZE], seg(blob, 0), seg(blob, 1)
    expect(head + s0 + s1, key, FormatError, "file is truncated", 2 * S)
    expect(head, key, FormatError, "file is truncated")
    expect(blob[:-1], key, FormatError, "file is truncated: segment 2 is incomplete", 2 * S)
    expect(blob[:HEADER_SIZE + 100], key, FormatError, "segment 0 is incomplete")


def test_appended_bytes(sample: tuple[Key, bytes]) -> None:
    key, blob = sample
    expect(blob + b"x", key, FormatError, "trailing data after the end", len(DATA))
    expect(blob + seg(blob, 0), key, FormatError, "trailing data", len(DATA))


def test_header_of_another_file(sample: tuple[Key, bytes]) -> None:
    key, blob = sample
    other = encrypt(key, DATA)
    expect(other[:HEADER_SIZE] + blob[HEADER_SIZE:], key, IntegrityError, "(segment 0)")


def test_wrong_key(sample: tuple[Key, bytes]) -> None:
    _, blob = sample
    expect(blob, Key(os.urandom(32)), IntegrityError,
           "authentication failed: wrong key or the file was modified (segment 0)")


def test_empty_plaintext_has_a_final_segment() -> None:
    key = Key(os.urandom(16))
    blob = encrypt(key, b"")
    assert len(blob) == HEADER_SIZE + 20 and blob[HEADER_SIZE:HEADER_SIZE + 4] == b"\x80\0\0\0"
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
    proc = subprocess.run([sys.executable, "-m", "kstream", "decrypt", "-q", "-k", str(key),
                           str(tmp_path / "bad"), str(tmp_path / "out")], capture_output=True)
    assert proc.returncode == 1
    assert proc.stderr.decode() == ("kstream: error: authentication failed: wrong key or the "
                                    "file was modified (segment 1)\n")
    assert not (tmp_path / "out").exists()
    proc = subprocess.run([sys.executable, "-m", "kstream", "decrypt", "-q", "-k", str(key),
                           str(tmp_path / "bad"), "-"], capture_output=True)
    assert proc.returncode == 1 and proc.stdout == DATA[:S]  # stops at the bad segment
