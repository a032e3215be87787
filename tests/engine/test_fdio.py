"""kstream.engine.fdio: whole segments from short reads, short writes, and OSError mapped once
to IOFailure (naming the file, keeping the OS error as the cause)."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
from pathlib import Path

import pytest

from kstream.engine.fdio import FdSink, FdSource, ReadStopped, advance, widen_pipe
from kstream.errors import IOFailure, io_errors
from kstream.format import DEFAULT_SEGMENT as S


async def test_fd_source_fills_segments_from_a_pipe() -> None:
    """A pipe delivers at most its buffer per read: one call still returns a whole segment."""
    r, w = os.pipe()
    data = os.urandom(S + 5)

    def feed() -> None:
        for i in range(0, len(data), 4096):  # many small pipe writes
            os.write(w, data[i : i + 4096])
        os.close(w)

    feeder = asyncio.get_running_loop().run_in_executor(None, feed)
    source = FdSource(r, "pipe")
    assert await source.read_pieces(S) == ([data[:S]], S)
    assert await source.read_pieces(S) == ([data[S:]], 5)
    assert await source.read_pieces(S) == ([b""], 0)
    await feeder
    os.close(r)


def test_fill_into_stops_at_end_of_input(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abcdefg")
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        buf = bytearray(10)
        source = FdSource(fd, "f")
        assert source.is_regular() and source.size_hint() == 7
        reader = source.reader()
        assert reader.fill_into(memoryview(buf), 4) == 4
        assert source.position() == 4 and source.size_hint() == 3  # its dup shares the offset
        assert reader.fill_into(memoryview(buf)[4:], 6) == 3
        assert bytes(buf[:7]) == b"abcdefg"
        reader.close()
    finally:
        os.close(fd)


async def test_a_stopped_reader_returns_from_a_silent_pipe_and_closes_its_fds() -> None:
    """A read waiting on a pipe whose writer never writes can be stopped and waited for;
    the reader then holds no descriptor (the caller's stays open and unread)."""
    r, w = os.pipe()
    try:
        reader = FdSource(r, "pipe").reader()
        own = reader.fd
        future = asyncio.get_running_loop().run_in_executor(
            None, reader.fill_into, memoryview(bytearray(10)), 10
        )
        await asyncio.sleep(0.1)
        assert not future.done()
        reader.stop()
        with pytest.raises(ReadStopped):
            await asyncio.wait_for(future, timeout=5)
        reader.close()
        reader.stop()  # after close: nothing to wake, no error
        with pytest.raises(OSError):
            os.fstat(own)
        os.write(w, b"still here")
        assert os.read(r, 100) == b"still here"
    finally:
        os.close(r)
        os.close(w)


async def test_fd_source_read_error_is_an_io_failure_with_its_cause() -> None:
    fd = os.open("/", os.O_RDONLY)
    try:
        with pytest.raises(IOFailure, match="^cannot read dir: Is a directory$") as info:
            await FdSource(fd, "dir").read_pieces(10)
    finally:
        os.close(fd)
    assert isinstance(info.value.__cause__, IsADirectoryError)
    assert info.value.__cause__.errno == errno.EISDIR


def test_write_error_is_an_io_failure_with_its_cause() -> None:
    """/dev/full: every write fails with ENOSPC, as on a full disk."""
    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        with pytest.raises(
            IOFailure, match="^cannot write output 'x': No space left on device$"
        ) as info:
            FdSink(fd, "output 'x'").write_buffers([b"data"])
        assert isinstance(info.value.__cause__, OSError)
        assert info.value.__cause__.errno == errno.ENOSPC
        with pytest.raises(IOFailure, match="No space left on device"):
            FdSink(fd, "output 'x'").pwrite_buffers([b"data"], 0)
    finally:
        os.close(fd)


async def test_fd_sink_handles_broken_pipe() -> None:
    """A closed reader stays BrokenPipeError (the CLI exits quietly on it, as cat does)."""
    r, w = os.pipe()
    os.close(r)
    with pytest.raises(BrokenPipeError):
        await FdSink(w, "stdout").write(b"x")
    os.close(w)


def test_io_errors_names_the_file_and_keeps_the_cause() -> None:
    cause = FileNotFoundError(errno.ENOENT, "No such file or directory", "/nope")
    with pytest.raises(IOFailure) as info, io_errors("open input", "'/nope'"):
        raise cause
    assert str(info.value) == "cannot open input '/nope': No such file or directory"
    assert info.value.__cause__ is cause
    with (
        pytest.raises(BrokenPipeError),
        io_errors("write", "stdout", passthrough=(BrokenPipeError,)),
    ):
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")
    with pytest.raises(ValueError), io_errors("read", "x"):  # only OSError is mapped
        raise ValueError("not an I/O error")
    with pytest.raises(IOFailure, match="^cannot read x: bare$"), io_errors("read", "x"):
        raise OSError("bare")  # no strerror: the message falls back to the error's text


def test_pwrite_and_pread_at_offsets(tmp_path: Path) -> None:
    """The ranges driver's I/O: vectored writes at an offset, and exact reads that fail
    loudly if the file shrank."""
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        sink, source = FdSink(fd, "out"), FdSource(fd, "in")
        assert sink.pwrite_buffers([b"abc", b"", memoryview(b"defg")], 3) == 10
        assert (tmp_path / "f").read_bytes() == b"\0\0\0abcdefg"
        buf = bytearray(4)
        source.pread_into(memoryview(buf), 5)
        assert buf == b"cdef"
        with pytest.raises(IOFailure, match="^in changed size while it was being read; try again$"):
            source.pread_into(memoryview(bytearray(4)), 8)
    finally:
        os.close(fd)


def test_advance_drops_written_bytes_across_views() -> None:
    views = [memoryview(b"abc"), memoryview(b"de"), memoryview(b"fgh")]
    advance(views, 4)
    assert [bytes(v) for v in views] == [b"e", b"fgh"]
    advance(views, 1)
    assert [bytes(v) for v in views] == [b"fgh"]
    advance(views, 3)
    assert views == []


def test_pipes_are_widened_to_one_segment() -> None:
    """With 64 KiB pipes every segment costs 16 wake-ups on each side of the pipe."""
    with open("/proc/sys/fs/pipe-max-size") as f:
        if int(f.read()) < S and os.geteuid() != 0:
            pytest.skip("pipe-max-size is below one segment and we are not root")
    r, w = os.pipe()
    try:
        assert fcntl.fcntl(r, fcntl.F_GETPIPE_SZ) < S
        FdSource(r, "in")
        assert fcntl.fcntl(r, fcntl.F_GETPIPE_SZ) >= S
        FdSink(w, "out")  # the same pipe: no error, still wide
        assert fcntl.fcntl(w, fcntl.F_GETPIPE_SZ) >= S
    finally:
        os.close(r)
        os.close(w)


def test_widen_pipe_leaves_other_fds_alone(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        widen_pipe(fd)  # a regular file: nothing to do, no error
        widen_pipe(10_000)  # not even open: best effort, no error
    finally:
        os.close(fd)
