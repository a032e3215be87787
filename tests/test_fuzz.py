"""Fuzzing the header parser and the decryptor with mutated valid files (hypothesis).

Properties, for every mutation of a valid file: only kstream's own errors escape, and the
plaintext released before any error is a prefix of the original plaintext made of whole
segments (nothing from a segment that failed authentication is ever released).

Profiles: the default is quick (CI). `KSTREAM_FUZZ_EXAMPLES=100000 python -m pytest
tests/test_fuzz.py -p no:cacheprovider` runs the long one (see docs/testing.md, "Fuzzing").
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import seal, split
from streams import each

import kstream
from kstream.backends.openssl import OpenSSLStream
from kstream.engine.plan import check_header
from kstream.errors import KstreamError
from kstream.format import CipherSuite, Header
from kstream.keys.key import Key
from kstream.segments import OpenCodec, derive_mac

EXAMPLES = int(os.environ.get("KSTREAM_FUZZ_EXAMPLES", "300"))
SEGMENT = 64  # small segments: many of them in a small file
KEY = Key(bytes(range(16)))
PLAIN = bytes(range(256)) * 2 + b"tail"  # 8 full segments and a short one
HEADER = Header(
    suite=CipherSuite.AES_128_CTR, iv=bytes.fromhex("00" * 15 + "f0"), auth_param=SEGMENT
)
VALID = seal(KEY.material(), HEADER.encode(), PLAIN, SEGMENT)

fuzz_settings = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=False, suppress_health_check=list(HealthCheck)
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(
            st.sampled_from(["flip", "set", "insert", "delete", "truncate", "append", "splice"])
        )
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=40))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 90))]
        elif kind == "truncate":
            del data[pos:]
        elif kind == "append":
            data += draw(st.binary(min_size=1, max_size=90))
        elif kind == "splice":  # move a run of bytes elsewhere (reorders segments)
            n = draw(st.integers(1, 90))
            run = data[pos : pos + n]
            del data[pos : pos + n]
            at = draw(st.integers(0, len(data)))
            data[at:at] = run
    return bytes(data)


def decrypt_segments(blob: bytes) -> tuple[bytes, Exception | None]:
    """The decryptor as every driver runs it: the header, then the codec, one segment per
    call, a short read meaning the end of input."""
    released = bytearray()
    try:
        header = check_header(blob[:32], KEY)
        codec = OpenCodec(
            OpenSSLStream(KEY.material(), header.iv),
            derive_mac(KEY.material(), header),
            header.auth_param,
        )
        body, pos = blob[32:], 0
        while True:
            n = min(codec.unit, len(body) - pos)
            buf = bytearray(codec.unit + 16)
            buf[:n] = body[pos : pos + n]
            pos += n
            for part in codec.process(memoryview(buf), n, n < codec.unit):
                released += part
            if n < codec.unit:
                break
    except KstreamError as exc:
        return bytes(released), exc
    return bytes(released), None


def check(blob: bytes, released: bytes, error: Exception | None) -> None:
    assert PLAIN.startswith(released)
    assert len(released) % SEGMENT == 0 or released == PLAIN
    if error is None:
        assert released == PLAIN and blob == VALID


def test_the_valid_file_decrypts() -> None:
    assert decrypt_segments(VALID) == (PLAIN, None)


@fuzz_settings
@given(st.binary(max_size=80))
def test_header_parser_only_raises_format_errors(data: bytes) -> None:
    with contextlib.suppress(KstreamError):
        Header.parse(data)


@fuzz_settings
@given(mutated())
def test_decryptor_on_mutated_files(blob: bytes) -> None:
    released, error = decrypt_segments(blob)
    check(blob, released, error)


@settings(
    max_examples=max(EXAMPLES // 10, 20), deadline=None, suppress_health_check=list(HealthCheck)
)
@given(mutated(), st.lists(st.integers(0, 10_000), max_size=6))
def test_stream_api_on_mutated_files(blob: bytes, cuts: list[int]) -> None:
    released = bytearray()

    async def go() -> None:
        async for piece in kstream.decrypt_stream(
            each(split(blob, cuts)), key=KEY, backend="openssl"
        ):
            released.extend(piece)

    error: Exception | None = None
    try:
        asyncio.run(go())
    except KstreamError as exc:
        error = exc
    check(blob, bytes(released), error)


@settings(
    max_examples=max(EXAMPLES // 10, 20), deadline=None, suppress_health_check=list(HealthCheck)
)
@given(mutated())
def test_file_api_on_mutated_files(tmp_path_factory: pytest.TempPathFactory, blob: bytes) -> None:
    d: Path = tmp_path_factory.mktemp("fuzz")
    (d / "in").write_bytes(blob)
    try:
        asyncio.run(kstream.decrypt_file(d / "in", d / "out", key=KEY, backend="openssl", jobs=3))
    except KstreamError:
        assert os.listdir(d) == ["in"]  # no output, no temp file
        return
    assert blob == VALID and (d / "out").read_bytes() == PLAIN
