"""The plaintext of a kstream file as a standard read-only binary file object.

:class:`DecryptedFile` has ``io.BufferedIOBase``'s interface (``read``, ``read1``,
``readinto``, ``peek``, ``readline`` and iteration, ``seek`` from any of the three
whences, ``tell``), so ``zipfile``, ``tarfile``, ``pyarrow`` and ``pandas`` read it as they
read a plain file; :meth:`DecryptedFile.read_at` is a positioned read that shares nothing
with the position, for readers that use one object from several threads. The segments are
read, checked and decrypted by :class:`kstream.fileobj.body.Body`.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable

from kstream.fileobj.base import KstreamFile
from kstream.fileobj.body import Body

#: What ``readinto`` fills: any writable buffer.
Buffer = bytearray | memoryview


class DecryptedFile(KstreamFile):
    """A read-only, seekable view of a kstream file's plaintext (from :func:`kstream.open`).

    ``size`` is the plaintext's size, authenticated when the file was opened. Reads touch
    only the segments they need; each segment's tag verifies before any of its bytes is
    returned. Closing releases the key (a passphrase's derived key is wiped) and the file.
    """

    READABLE = True
    SEEKABLE = True

    def __init__(self, body: Body, name: str, release: Callable[[], None]) -> None:
        super().__init__()
        self._body = body
        self._name = name
        self._release: Callable[[], None] | None = release
        self._pos = 0
        self._lock = threading.Lock()

    # --- what it is -----------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def mode(self) -> str:
        return "rb"

    @property
    def size(self) -> int:
        """The plaintext's size in bytes."""
        return self._body.size

    @property
    def segment_size(self) -> int:
        """Plaintext bytes per segment (the header's S): the unit a read decrypts."""
        return self._body.segment

    @property
    def segments_decrypted(self) -> int:
        """How many segments reads have fetched and checked (cache hits fetch none)."""
        return self._body.checked

    def __repr__(self) -> str:  # no key, no plaintext
        state = "closed" if self.closed else f"{self._body.size} bytes of plaintext"
        return f"<kstream.DecryptedFile {self._name!r} ({state})>"

    # --- position ------------------------------------------------------------------------

    def tell(self) -> int:
        self._check_open()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        with self._lock:
            if whence == io.SEEK_SET:
                pos = offset
            elif whence == io.SEEK_CUR:
                pos = self._pos + offset
            elif whence == io.SEEK_END:
                pos = self._body.size + offset
            else:
                raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
            if pos < 0:
                raise ValueError(f"negative seek position {pos}")
            self._pos = pos
            return pos

    # --- reads ---------------------------------------------------------------------------

    def read(self, size: int | None = -1) -> bytes:
        self._check_open()
        with self._lock:
            want = self._body.size - self._pos if size is None or size < 0 else size
            data = self._body.read(self._pos, want)
            self._pos += len(data)
            return data

    def read1(self, size: int | None = -1) -> bytes:
        return self.read(size)

    def readinto(self, buffer: Buffer) -> int:  # type: ignore[override]
        self._check_open()
        with memoryview(buffer) as view, self._lock:
            n = self._body.read_into(self._pos, view.cast("B"))
            self._pos += n
            return n

    def readinto1(self, buffer: Buffer) -> int:  # type: ignore[override]
        return self.readinto(buffer)

    def peek(self, size: int = 0) -> bytes:
        """The rest of the current segment's plaintext (at least one byte before the end),
        without moving the position: what ``readline`` scans for a newline."""
        self._check_open()
        with self._lock:
            pos = self._pos
        return self._body.segment_rest(pos)

    def read_at(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset`` (fewer at the end), leaving the position
        alone: safe to call from any number of threads at once."""
        self._check_open()
        if offset < 0 or size < 0:
            raise ValueError("read_at needs a non-negative offset and size")
        return self._body.read(offset, size)

    # --- closing -------------------------------------------------------------------------

    def close(self) -> None:
        if self.closed:
            return
        release, self._release = self._release, None
        try:
            self._body.close()
            if release is not None:
                release()
        finally:
            super().close()
