"""The two ends of an encrypted file object: positioned reads of an existing kstream file,
and sequential writes of a new one.

An input is a path (opened here, read with ``pread``: any number of threads at once, no
lock) or a seekable binary file object of the caller's (a local file, an fsspec file,
``io.BytesIO``), read under a lock with ``seek`` and ``read`` because it has one position.
An output is a path, written atomically through :class:`kstream.atomic.AtomicFile` (the
file appears complete on :meth:`Output.finish` and never otherwise), a FIFO or character
device written directly as ``encrypt`` writes one, or a writable file object.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import threading
from typing import Any, Protocol

from kstream.atomic import AtomicFile, check_output_path, open_stream
from kstream.errors import UsageError, io_errors

Buffer = bytes | bytearray | memoryview


class Input(Protocol):
    """The encrypted file, read by offset from where its header starts."""

    #: For messages: ``input 'PATH'`` or the object's repr.
    name: str
    #: Bytes from the header's first byte to the end of the file, when opened.
    size: int

    def pread(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes at ``offset``; fewer only where the file ends."""
        ...

    def pread_parts(self, offset: int, parts: list[memoryview]) -> int:
        """Fill ``parts`` one after another from ``offset``; the count, short only where
        the file ends."""
        ...

    def close(self) -> None: ...


class PathInput:
    """A file opened here by path: read with ``pread``, so concurrent reads need no lock."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.name = f"input '{os.fspath(path)}'"
        with io_errors("open", self.name):
            self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            with io_errors("read", self.name):
                st = os.fstat(self._fd)
            if stat.S_ISDIR(st.st_mode):
                raise UsageError(f"{self.name} is a directory; give a kstream file")
            if not stat.S_ISREG(st.st_mode):
                raise UsageError(
                    f"{self.name} is not a regular file; random access needs one "
                    "(decrypt a pipe with 'kstream decrypt' or kstream.decrypt_stream)"
                )
        except BaseException:
            os.close(self._fd)
            raise
        self.size = st.st_size

    def pread(self, offset: int, n: int) -> bytes:
        parts: list[bytes] = []
        with io_errors("read", self.name):
            while n > 0:
                got = os.pread(self._fd, n, offset)
                if not got:
                    break
                parts.append(got)
                n -= len(got)
                offset += len(got)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def pread_parts(self, offset: int, parts: list[memoryview]) -> int:
        got, total = 0, sum(map(len, parts))
        with io_errors("read", self.name):
            while got < total:
                n = os.preadv(self._fd, parts, offset + got)
                if n == 0:
                    break
                got += n
                parts = _after(parts, n)
        return got

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class ObjectInput:
    """A caller's seekable binary file object, from its position when opened (usually 0).

    Its one position is shared, so each read seeks and reads under a lock; the object stays
    the caller's (it is not closed here, and its position is wherever the last read left it).
    """

    def __init__(self, file: Any) -> None:
        self.name = f"input {describe(file)}"
        self._file = file
        self._lock = threading.Lock()
        if not _asks(file, "readable") or not _asks(file, "seekable"):
            raise UsageError(
                f"cannot read {type(file).__name__} at random offsets: give a path or a "
                "readable, seekable binary file (decrypt a stream with kstream.decrypt_stream)"
            )
        with io_errors("read", self.name):
            self._base = file.tell()
            self.size = file.seek(0, io.SEEK_END) - self._base

    def pread(self, offset: int, n: int) -> bytes:
        parts: list[bytes] = []
        with self._lock, io_errors("read", self.name):
            self._file.seek(self._base + offset)
            while n > 0:
                got = self._file.read(n)
                if not got:
                    break
                parts.append(bytes(got))
                n -= len(got)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def pread_parts(self, offset: int, parts: list[memoryview]) -> int:
        """One read, then copied into the parts: an object may be a network file, where
        each read is a request."""
        data = memoryview(self.pread(offset, sum(map(len, parts))))
        got = 0
        for part in parts:
            n = min(len(part), len(data) - got)
            part[:n] = data[got : got + n]
            got += n
        return got

    def close(self) -> None:
        """The object is the caller's: left open."""


def _after(parts: list[memoryview], n: int) -> list[memoryview]:
    """``parts`` less their first ``n`` bytes."""
    while n and n >= len(parts[0]):
        n -= len(parts[0])
        parts = parts[1:]
    return [parts[0][n:], *parts[1:]] if n else parts


def name_of(file: Any) -> str:
    """What a file object reports as its ``name``: the path, or the caller's object's
    path or name if it has one, else its type in brackets (never its repr, which may show
    contents)."""
    if isinstance(file, str | os.PathLike):
        return os.fspath(file)
    for attribute in ("path", "name"):
        value = getattr(file, attribute, None)
        if isinstance(value, str):
            return value
    return f"<{type(file).__name__}>"


def describe(file: Any) -> str:
    """:func:`name_of` for messages: a name quoted, a type as it is."""
    name = name_of(file)
    return name if name.startswith("<") and not isinstance(file, str | os.PathLike) else f"'{name}'"


def _asks(file: Any, question: str) -> bool:
    method = getattr(file, question, None)
    try:
        return bool(method()) if callable(method) else False
    except (OSError, ValueError):
        return False


class Output(Protocol):
    """Where a new encrypted file's bytes go, in order."""

    name: str

    def write(self, data: Buffer) -> None: ...

    def finish(self) -> None:
        """Everything is written: make the file whole (a path appears under its name)."""
        ...

    def abort(self) -> None:
        """The file will never be whole: leave nothing (idempotent)."""
        ...


def _write_all(fd: int, data: Buffer, name: str) -> None:
    with memoryview(data) as view, io_errors("write", name):
        view = view.cast("B")
        while view:
            view = view[os.write(fd, view) :]


class PathOutput:
    """A new file at a path: a temporary file in its directory, renamed into place by
    :meth:`finish`. A FIFO or character device (``/dev/null``) is written directly, and so
    is ``/dev/stdout``, as descriptor 1; a terminal only unless ``no_terminal`` (the
    default: ciphertext does not belong on one)."""

    def __init__(
        self, path: str | os.PathLike[str], *, force: bool, no_terminal: bool = True
    ) -> None:
        self.path = os.fspath(path)
        self.name = f"output '{self.path}'"
        self._atomic: AtomicFile | None = None
        self._stream_fd = -1
        if check_output_path(self.path, force=force, no_terminal=no_terminal):
            opened = open_stream(self.path)
            if opened is None:
                raise UsageError(f"the FIFO '{self.path}' has no reader; start the reader first")
            fd, owned = opened
            self._stream_fd = fd if owned else os.dup(fd)
        else:
            self._atomic = AtomicFile(self.path, force=force)

    @property
    def _fd(self) -> int:
        return self._atomic.fd if self._atomic is not None else self._stream_fd

    def write(self, data: Buffer) -> None:
        _write_all(self._fd, data, self.name)

    def finish(self) -> None:
        if self._atomic is not None:
            self._atomic.commit()
        elif self._stream_fd >= 0:
            os.close(self._stream_fd)
            self._stream_fd = -1

    def abort(self) -> None:
        if self._atomic is not None:
            self._atomic.abort()
        elif self._stream_fd >= 0:
            os.close(self._stream_fd)
            self._stream_fd = -1


class ObjectOutput:
    """A caller's writable binary file object: written in order, flushed by
    :meth:`finish`. If ``owned`` (given to kstream to close), it is closed there too, and
    a file that writes through a temporary (fsspec's files opened with
    ``autocommit=False``: local files, S3 objects) is committed on :meth:`finish` and
    discarded on :meth:`abort`, so that a failed write leaves nothing."""

    def __init__(self, file: Any, owned: bool = False) -> None:
        if not hasattr(file, "write"):
            raise UsageError(
                f"cannot write to {type(file).__name__}: give a path or a writable binary file"
            )
        self._file = file
        self._owned = owned
        self.name = f"output {describe(file)}"

    def write(self, data: Buffer) -> None:
        with memoryview(data) as view, io_errors("write", self.name):
            view = view.cast("B")
            while view:
                n = self._file.write(view)
                view = view[len(view) if n is None else n :]

    def _deferred(self) -> bool:
        return getattr(self._file, "autocommit", True) is False

    def finish(self) -> None:
        with io_errors("write", self.name):
            flush = getattr(self._file, "flush", None)
            if callable(flush):
                flush()
            if self._owned:
                self._file.close()
                if self._deferred():
                    self._file.commit()

    def abort(self) -> None:
        """An owned file is discarded (or at least closed); what went into a caller's
        object stays there, incomplete, and fails to decrypt."""
        if not self._owned:
            return
        with contextlib.suppress(Exception):
            if self._deferred():
                self._file.discard()
            else:
                self._file.close()
