"""The overlap rule the root conftest applies to every ``update_into``."""

from __future__ import annotations

import pytest
from buffers import overlap

from kstream.backends.openssl import OpenSSLStream


def test_overlap_is_seen_at_any_offset() -> None:
    buf = bytearray(64)
    view = memoryview(buf)
    assert overlap(view[:32], view)
    assert overlap(view[:32], view[16:])
    assert overlap(view[8:9], buf)
    assert not overlap(view[:16], view[16:])
    assert not overlap(bytearray(16), bytearray(16))
    assert not overlap(bytes(16), buf)  # read-only input: never an output's memory


def test_an_overlapping_update_into_fails_the_test() -> None:
    stream = OpenSSLStream(bytes(16), bytes(16))
    buf = bytearray(48)
    with memoryview(buf) as view, pytest.raises(AssertionError, match="overlapping"):
        stream.update_into(view[:16], view[4:])
    assert stream.update_into(bytes(16), bytearray(32)) == 16
