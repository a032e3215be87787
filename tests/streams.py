"""Small async stream helpers shared by the tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest


class Collect:
    """A Sink that keeps everything written to it."""

    def __init__(self) -> None:
        self.data = bytearray()

    async def write(self, data: bytes) -> None:
        self.data += data


async def one(data: bytes) -> AsyncIterator[bytes]:
    """An async source that yields ``data`` in one piece."""
    yield data


async def each(pieces: list[bytes]) -> AsyncIterator[bytes]:
    """An async source that yields ``pieces`` one by one."""
    for piece in pieces:
        yield piece


def corrupt_kernel_output(monkeypatch: pytest.MonkeyPatch, offset: int = 100) -> None:
    """Make every kernel stream flip one bit at ``offset`` of an update's output, as a
    faulty driver would; for checking that ``--verify`` catches it."""
    from kstream.backends.kernel.ctr import KernelStream

    real_update = KernelStream.update

    def corrupt(self: KernelStream, data: bytes | bytearray | memoryview) -> bytes:
        out = bytearray(real_update(self, data))
        if len(out) > offset:
            out[offset] ^= 1
        return bytes(out)

    monkeypatch.setattr(KernelStream, "update", corrupt)
