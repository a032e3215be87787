"""File descriptors as sources and sinks: whole segments per call, short reads and writes
handled, and every ``OSError`` mapped once (:func:`kstream.errors.io_errors`)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import select
import stat
import threading
from collections.abc import Sequence

from kstream.engine.threads import run_blocking, wait_for_worker
from kstream.errors import IOFailure, io_errors
from kstream.format import DEFAULT_SEGMENT

Buffer = bytes | bytearray | memoryview


def widen_pipe(fd: int) -> None:
    """Give a pipe a buffer of one segment (best effort; the default is 64 KiB).

    With 64 KiB pipes, every segment costs 16 wake-ups of kstream and of its neighbour in
    the shell pipeline; a 1 MiB pipe (the usual /proc/sys/fs/pipe-max-size) makes it one.
    """
    with contextlib.suppress(OSError):
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, DEFAULT_SEGMENT)


def advance(views: list[memoryview], n: int) -> None:
    """Drop the first ``n`` bytes from a list of views (after a short vectored write)."""
    while views and n >= len(views[0]):
        n -= len(views.pop(0))
    if n:
        views[0] = views[0][n:]


class ReadStopped(Exception):
    """A read was stopped (:meth:`FdReader.stop`): whoever stopped it no longer waits for
    its data, and it must not look like the end of the input."""


class FdReader:
    """One worker thread's reading of a source, which may never outlive its API call.

    The caller's descriptor is not touched after the call returns: the thread reads its own
    ``dup`` of it and closes that itself (:meth:`close`), so even a read that is still
    running can never reach a descriptor number the caller has closed and reused. And the
    call can wait for the thread: :meth:`stop` is checked before every read, and a read
    from a pipe or terminal first polls the data together with an eventfd that
    :meth:`stop` signals, so a reader waiting for a writer that never writes returns at
    once. A regular file is always readable and is read without the poll.
    """

    def __init__(self, fd: int, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._stopped = self._closed = False
        self._poll: select.poll | None = None
        with io_errors("read", name):
            self.fd = os.dup(fd)
            try:
                self._wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
            except BaseException:
                os.close(self.fd)
                raise
        if not stat.S_ISREG(os.fstat(self.fd).st_mode):
            self._poll = select.poll()
            self._poll.register(self.fd, select.POLLIN)
            self._poll.register(self._wake, select.POLLIN)

    def fill_into(self, view: memoryview, n: int) -> int:
        """Read until ``view[:n]`` is full or the input ends; return the count (blocking;
        :class:`ReadStopped` once stopped).

        A pipe delivers at most what it holds per read, so this loops inside one worker
        thread call instead of costing an event-loop round trip per read.
        """
        got = 0
        with io_errors("read", self.name):
            while got < n:
                self._wait_readable()
                k = os.readv(self.fd, [view[got:n]])
                if k == 0:
                    break
                got += k
        return got

    def _wait_readable(self) -> None:
        if self._stopped:
            raise ReadStopped
        if self._poll is None:
            return
        events = self._poll.poll()
        if self._stopped or any(fd == self._wake for fd, _ in events):
            raise ReadStopped

    def stop(self) -> None:
        """Make the reading thread return before its next read (from any thread)."""
        with self._lock:
            self._stopped = True
            if not self._closed:
                os.eventfd_write(self._wake, 1)

    def close(self) -> None:
        """Close the reader's descriptors: called by its thread when it is done reading."""
        with self._lock:
            if not self._closed:
                self._closed = True
                os.close(self.fd)
                os.close(self._wake)


class FdSource:
    """Reads a file descriptor (a file, a pipe, stdin), filling a whole segment per call."""

    def __init__(self, fd: int, name: str) -> None:
        self.fd = fd
        self.name = name
        widen_pipe(fd)

    def reader(self) -> FdReader:
        """A reader for one worker thread (see :class:`FdReader`); that thread closes it."""
        return FdReader(self.fd, self.name)

    def _fill(self, reader: FdReader, n: int) -> bytes:
        try:
            buf = bytearray(n)
            with memoryview(buf) as view:
                got = reader.fill_into(view, n)
            del buf[got:]
            return bytes(buf)
        finally:
            reader.close()

    async def read_pieces(self, n: int) -> tuple[list[Buffer], int]:
        """Exactly ``n`` bytes (fewer only at the end), as one piece, and the count. A
        cancelled call stops its read (woken if it waits on a pipe) and waits for it, so
        that no read of this call happens after it."""
        reader = self.reader()
        future = asyncio.get_running_loop().run_in_executor(None, self._fill, reader, n)
        data = await wait_for_worker(future, reader.stop)
        return [data], len(data)

    def is_regular(self) -> bool:
        """Whether the fd is a regular file (seekable, with a known size)."""
        try:
            return stat.S_ISREG(os.fstat(self.fd).st_mode)
        except OSError:
            return False

    def position(self) -> int:
        """The current file offset (where reading would continue)."""
        return os.lseek(self.fd, 0, os.SEEK_CUR)

    def size_hint(self) -> int | None:
        """Remaining bytes for a regular file (for progress bars), else ``None``."""
        try:
            st = os.fstat(self.fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            return max(st.st_size - os.lseek(self.fd, 0, os.SEEK_CUR), 0)
        except OSError:
            return None

    def pread_into(self, view: memoryview, offset: int) -> None:
        """Fill all of ``view`` from ``offset`` (a regular file that must not shrink)."""
        got = 0
        with io_errors("read", self.name):
            while got < len(view):
                n = os.preadv(self.fd, [view[got:]], offset + got)
                if n == 0:
                    raise IOFailure(f"{self.name} changed size while it was being read; try again")
                got += n


class FdSink:
    """Writes to a file descriptor, handling short writes."""

    def __init__(self, fd: int, name: str) -> None:
        self.fd = fd
        self.name = name
        #: Bytes written by :meth:`write_buffers`: what a pipe's reader may already have.
        self.written = 0
        widen_pipe(fd)

    def write_buffers(self, buffers: Sequence[Buffer]) -> None:
        """Write all of ``buffers`` in order with ``writev`` (a closed pipe stays a
        ``BrokenPipeError``: the CLI exits quietly on it, as ``cat`` does)."""
        views = [memoryview(p) for p in buffers if len(p)]
        with io_errors("write", self.name, passthrough=(BrokenPipeError,)):
            while views:
                n = os.writev(self.fd, views)
                self.written += n
                advance(views, n)

    def pwrite_buffers(self, buffers: Sequence[Buffer], offset: int) -> int:
        """Write ``buffers`` at ``offset`` (parallel ranges); return the offset after them."""
        views = [memoryview(p) for p in buffers if len(p)]
        with io_errors("write", self.name):
            while views:
                n = os.pwritev(self.fd, views, offset)
                offset += n
                advance(views, n)
        return offset

    async def write(self, data: Buffer) -> None:
        await run_blocking(self.write_buffers, [data])
