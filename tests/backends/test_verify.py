"""--verify's comparison: tolerant of held-back output, exact about the first bad byte."""

from __future__ import annotations

import os

import pytest
from reference import ctr

from kstream.backends.openssl import OpenSSLBackend
from kstream.backends.verify import VerifyingStream
from kstream.errors import IntegrityError
from kstream.keys.key import Key

KEY = Key(bytes(range(16)))
IV = bytes(16)


class HoldsBack:
    """Like the kernel: releases only whole blocks until the stream ends."""

    description = "kernel test-double"

    def __init__(self, flip_at: int | None = None) -> None:
        self.inner = OpenSSLBackend().open(KEY, IV)
        self.buf = bytearray()
        self.flip_at = flip_at
        self.pos = 0

    def _release(self, n: int) -> bytes:
        out = bytearray(self.buf[:n])
        del self.buf[:n]
        if self.flip_at is not None and self.pos <= self.flip_at < self.pos + len(out):
            out[self.flip_at - self.pos] ^= 1
        self.pos += len(out)
        return bytes(out)

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        self.buf += self.inner.update(data)
        return self._release(len(self.buf) // 16 * 16)

    def finalize(self) -> bytes:
        self.buf += self.inner.finalize()
        return self._release(len(self.buf))

    def close(self) -> None:
        self.inner.close()


def run(stream: VerifyingStream, pieces: list[bytes]) -> bytes:
    return b"".join(stream.update(p) for p in pieces) + stream.finalize()


def test_held_back_output_verifies() -> None:
    data = os.urandom(1000)
    pieces = [data[:7], data[7:300], data[300:301], data[301:]]
    out = run(VerifyingStream(HoldsBack(), OpenSSLBackend().open(KEY, IV)), pieces)
    assert out == ctr(KEY.material(), IV, data)


@pytest.mark.parametrize("offset", [0, 15, 16, 517, 999])
def test_first_mismatch_is_named(offset: int) -> None:
    stream = VerifyingStream(HoldsBack(flip_at=offset), OpenSSLBackend().open(KEY, IV))
    with pytest.raises(IntegrityError, match=f"kernel test-double disagrees .* offset {offset}$"):
        run(stream, [os.urandom(500), os.urandom(500)])


def test_short_output_is_caught() -> None:
    class Short(HoldsBack):
        def finalize(self) -> bytes:
            return b""

    stream = VerifyingStream(Short(), OpenSSLBackend().open(KEY, IV))
    with pytest.raises(IntegrityError, match="stopped short at byte offset 992"):
        run(stream, [os.urandom(1000)])
