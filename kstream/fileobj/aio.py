"""``kstream.open_async``: :func:`kstream.open` for asyncio code.

Every call that may block (opening: reading the header, deriving a passphrase's key,
checking the last segment; reads, which decrypt; writes, which encrypt; closing, which
syncs a new file) runs in a worker thread, so the event loop never waits on disk, network
or cipher. A cancelled call waits for its worker before the cancellation goes on
(:func:`kstream.engine.threads.run_blocking`), so the file is never used by a thread after
the coroutine that started the work has given up on it.

The interface mirrors ``aiofiles``: ``await f.read()``, ``await f.seek(0)``, ``async with
kstream.open_async(...) as f``. An exception inside ``async with`` on a writer leaves
nothing behind, as with the synchronous writer.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Generator
from types import TracebackType
from typing import Any, ParamSpec

from kstream.engine.threads import run_blocking
from kstream.fileobj.opener import open_file
from kstream.fileobj.reader import DecryptedFile
from kstream.fileobj.writer import EncryptingFile

Buffer = bytes | bytearray | memoryview
P = ParamSpec("P")


class AsyncFile:
    """A kstream file object whose blocking calls run off the event loop."""

    def __init__(self, file: DecryptedFile | EncryptingFile) -> None:
        self._file = file

    @property
    def sync(self) -> DecryptedFile | EncryptingFile:
        """The synchronous file object underneath (for code that runs in a thread itself)."""
        return self._file

    @property
    def name(self) -> str:
        return self._file.name

    @property
    def closed(self) -> bool:
        return self._file.closed

    @property
    def size(self) -> int:
        """The plaintext's size (a reader only)."""
        return self._reader().size

    def __repr__(self) -> str:
        return f"<kstream.AsyncFile of {self._file!r}>"

    def _reader(self) -> DecryptedFile:
        if not isinstance(self._file, DecryptedFile):
            raise io.UnsupportedOperation("not readable: opened with mode 'wb'")
        return self._file

    def _writer(self) -> EncryptingFile:
        if not isinstance(self._file, EncryptingFile):
            raise io.UnsupportedOperation("not writable: opened with mode 'rb'")
        return self._file

    async def read(self, size: int | None = -1) -> bytes:
        return await run_blocking(self._reader().read, size)

    async def readinto(self, buffer: bytearray | memoryview) -> int:
        return await run_blocking(self._reader().readinto, buffer)

    async def read_at(self, offset: int, size: int) -> bytes:
        """A positioned read: any number may run at once, from any tasks."""
        return await run_blocking(self._reader().read_at, offset, size)

    async def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)  # moves a number: nothing to wait for

    async def tell(self) -> int:
        return self._file.tell()

    async def write(self, data: Buffer) -> int:
        return await run_blocking(self._writer().write, data)

    async def close(self) -> None:
        await run_blocking(self._file.close)

    async def abort(self) -> None:
        """A writer stops without finishing: a path target is removed."""
        await run_blocking(self._writer().abort)

    async def __aenter__(self) -> AsyncFile:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None and isinstance(self._file, EncryptingFile):
            await run_blocking(self._file.abort)
        else:
            await self.close()


class _Opening:
    """What :func:`open_async` returns: awaited, the open file; used with ``async with``,
    the file, closed (or, for a writer left by an exception, aborted) at the end."""

    def __init__(self, opening: Callable[[], DecryptedFile | EncryptingFile]) -> None:
        self._opening = opening
        self._opened: AsyncFile | None = None

    async def _open(self) -> AsyncFile:
        return AsyncFile(await run_blocking(self._opening))

    def __await__(self) -> Generator[Any, None, AsyncFile]:
        return self._open().__await__()

    async def __aenter__(self) -> AsyncFile:
        self._opened = await self._open()
        return self._opened

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._opened is not None:
            await self._opened.__aexit__(exc_type, exc, tb)


def _deferred(opener: Callable[P, DecryptedFile | EncryptingFile]) -> Callable[P, _Opening]:
    """``opener``'s signature (every option typed, as mypy sees it), opening in a worker."""

    def open_async(*args: P.args, **kwargs: P.kwargs) -> _Opening:
        """:func:`kstream.open` for asyncio: ``f = await kstream.open_async(...)`` or
        ``async with kstream.open_async(...) as f``; the same arguments, an
        :class:`AsyncFile`."""
        return _Opening(lambda: opener(*args, **kwargs))

    return open_async


open_async = _deferred(open_file)
