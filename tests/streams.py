"""Small async stream helpers shared by the tests."""

from __future__ import annotations

from collections.abc import AsyncIterator


class Collect:
    """A Sink that keeps everything written to it."""

    def __init__(self) -> None:
        self.data = bytearray()

    async def write(self, data: bytes) -> None:
        self.data += data


async def one(data: bytes) -> AsyncIterator[bytes]:
    """An async source that yields ``data`` in one piece."""
    yield data
