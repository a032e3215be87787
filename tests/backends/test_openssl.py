"""The OpenSSL backend against an independent CTR reference, for any chunking."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import ctr, split

from kstream.backends import counter_add, get_backend, select_backend
from kstream.backends.openssl import OpenSSLBackend
from kstream.keys.key import Key
from kstream.selftest import NIST_CTR_VECTORS, CtrVector

LENGTHS = [0, 1, 15, 16, 17, 64511, 64512, 64513, 3 * 64512 - 1, 3 * 64512 + 1]


def run(key: Key, iv: bytes, pieces: list[bytes]) -> bytes:
    stream = OpenSSLBackend().open(key, iv)
    try:
        return b"".join(stream.update(p) for p in pieces) + stream.finalize()
    finally:
        stream.close()


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("size", [16, 24, 32])
def test_lengths_match_reference(length: int, size: int) -> None:
    key, iv, data = Key(os.urandom(size)), os.urandom(16), os.urandom(length)
    assert run(key, iv, [data]) == ctr(key.material(), iv, data)


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(LENGTHS) | st.integers(0, 5000),
    st.lists(st.integers(0, 10**6), max_size=12),
    st.sampled_from([16, 24, 32]),
)
def test_any_split_gives_one_shot_ciphertext(length: int, cuts: list[int], size: int) -> None:
    key, iv = Key(os.urandom(size)), os.urandom(16)
    data = os.urandom(length)
    assert run(key, iv, split(data, cuts)) == ctr(key.material(), iv, data)


def test_counter_wraps_at_128_bits() -> None:
    key, iv = Key(os.urandom(16)), b"\xff" * 16
    data = os.urandom(100)
    assert run(key, iv, [data]) == ctr(key.material(), iv, data)
    assert counter_add(iv, 1) == bytes(16)
    assert counter_add(bytes(8) + b"\xff" * 8, 1) == bytes(7) + b"\x01" + bytes(8)


def test_decrypt_is_encrypt() -> None:
    key, iv, data = Key(os.urandom(32)), os.urandom(16), os.urandom(1000)
    assert run(key, iv, [run(key, iv, [data])]) == data


def test_probe_and_selection() -> None:
    status = OpenSSLBackend().probe()
    assert status.available and "OpenSSL" in status.reason
    assert get_backend("openssl").name == "openssl"
    assert select_backend("openssl").name == "openssl"


def test_closed_stream_refuses_work() -> None:
    stream = OpenSSLBackend().open(Key(os.urandom(16)), bytes(16))
    stream.close()
    stream.close()
    with pytest.raises(ValueError, match="closed"):
        stream.update(b"x")


@pytest.mark.parametrize("vector", NIST_CTR_VECTORS, ids=lambda v: v.section)
def test_nist_sp800_38a_vectors(vector: CtrVector) -> None:
    key = Key(vector.key)
    assert run(key, vector.counter, [vector.input]) == vector.output
    pieces = split(vector.input, [1, 16, 17, 40])
    assert run(key, vector.counter, pieces) == vector.output
