"""What the reader and the writer share as binary file objects: which of read, write and
seek they offer, and what they refuse (pickling, which would copy a key; ``detach`` and
``fileno``, since no raw stream or descriptor holds the plaintext)."""

from __future__ import annotations

import io
from typing import ClassVar, NoReturn


class KstreamFile(io.BufferedIOBase):
    """A kstream file object: subclasses say what they offer in the three class flags."""

    READABLE: ClassVar[bool] = False
    WRITABLE: ClassVar[bool] = False
    SEEKABLE: ClassVar[bool] = False

    def __reduce__(self) -> NoReturn:
        raise TypeError("a kstream file object cannot be pickled (it holds a key); open it again")

    def readable(self) -> bool:
        self._check_open()
        return self.READABLE

    def writable(self) -> bool:
        self._check_open()
        return self.WRITABLE

    def seekable(self) -> bool:
        self._check_open()
        return self.SEEKABLE

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file.")

    def detach(self) -> NoReturn:
        raise io.UnsupportedOperation("a kstream file object has no raw stream to detach")

    def fileno(self) -> NoReturn:
        raise io.UnsupportedOperation("a kstream file object has no file descriptor")
