"""A new kstream file written as a standard binary file object, encrypting as it goes.

:class:`EncryptingFile` takes any number of ``write`` calls of any size, cuts the plaintext
into segments of S bytes and seals each through the plan's codec as soon as it is full:
the bytes written are the ones ``kstream encrypt`` writes for the same plaintext, key and
header (the header first, every full segment, then the last one, short or empty, on
:meth:`~EncryptingFile.close`). Memory: one segment of plaintext and one sealed segment.

It cannot seek (format v1 is written front to back): ``zipfile`` then writes in streaming
mode (data descriptors after each member), ``tarfile`` as it always does. To a path the
output is atomic: the file appears, complete, when ``close`` returns, and an exception
inside ``with`` (or a writer dropped without ``close``) leaves nothing behind.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from types import TracebackType

from kstream.backends.base import BLOCK
from kstream.fileobj.base import KstreamFile
from kstream.fileobj.ends import Output
from kstream.segments import Codec

Buffer = bytes | bytearray | memoryview


class EncryptingFile(KstreamFile):
    """A write-only binary file object that encrypts into a kstream file."""

    WRITABLE = True

    def __init__(
        self,
        output: Output,
        name: str,
        header: bytes,
        codec: Codec,
        release: Callable[[], None],
    ) -> None:
        super().__init__()
        self._output = output
        self._name = name
        self._codec = codec
        self._release: Callable[[], None] | None = release
        self._segment = codec.unit
        self._buffer = bytearray(self._segment + BLOCK)
        self._view = memoryview(self._buffer)
        self._fill = 0
        self._written = 0
        self._failed = False
        try:
            output.write(header)
        except BaseException:
            self.abort()
            raise

    @property
    def name(self) -> str:
        return self._name

    @property
    def mode(self) -> str:
        return "wb"

    def __repr__(self) -> str:  # no key, no plaintext
        state = "closed" if self.closed else f"{self._written} bytes written"
        return f"<kstream.EncryptingFile {self._name!r} ({state})>"

    def tell(self) -> int:
        """Plaintext bytes written so far (``zipfile`` and ``tarfile`` keep offsets)."""
        self._check_open()
        return self._written

    def write(self, data: Buffer) -> int:  # type: ignore[override]
        self._check_open()
        if self._failed:
            raise ValueError("an earlier write failed: this kstream file is incomplete")
        with memoryview(data) as whole:
            view = whole.cast("B")
            total = len(view)
            try:
                while view:
                    take = min(len(view), self._segment - self._fill)
                    self._view[self._fill : self._fill + take] = view[:take]
                    self._fill += take
                    view = view[take:]
                    if self._fill == self._segment:  # a full segment is never the last
                        self._seal(last=False)
            except BaseException:
                self._failed = True
                raise
        self._written += total
        return total

    def _seal(self, last: bool) -> None:
        for out in self._codec.process(self._view, self._fill, last):
            self._output.write(out)
        self._fill = 0

    def flush(self) -> None:
        """Nothing to do before ``close``: a segment is sealed only once it is full."""
        self._check_open()

    def close(self) -> None:
        """Seal the last segment (short, perhaps empty), make the file whole and release
        the key. After a failed write, the same as :meth:`abort`."""
        if self.closed:
            return
        if self._failed:
            self.abort()
            return
        try:
            self._seal(last=True)
            self._output.finish()
        except BaseException:
            self.abort()
            raise
        self._end()

    def abort(self) -> None:
        """Stop without finishing the file: a path target is removed (nothing remains);
        what went into a caller's file object stays there, incomplete, and fails to
        decrypt."""
        if self.closed:
            return
        try:
            self._output.abort()
        finally:
            self._end()

    def _end(self) -> None:
        release, self._release = self._release, None
        try:
            self._codec.cipher.close()
            if release is not None:
                release()
        finally:
            self._view.release()
            super().close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()

    def __del__(self) -> None:
        # Dropped without close: the plaintext may be cut anywhere, so nothing appears.
        with contextlib.suppress(Exception):
            if not self.closed:
                self.abort()
