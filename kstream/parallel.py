"""Parallel AES-CTR for a regular input file and a regular output file.

CTR is seekable: the keystream for byte offset ``o`` starts at counter ``IV + o/16``. So a
file can be cut into ranges of whole segments that are processed concurrently, each by its
own cipher stream (with the kernel backend, its own AF_ALG socket), read with ``pread`` and
written with ``pwrite`` straight to where the sequential path puts them: segment ``i`` of
an authenticated file always sits at ``HEADER_SIZE + i * (S + 20)``, its plaintext at
``i * S``. Output is byte-identical to the sequential path (a test checks this).

Why it pays although ``cryptography`` holds the GIL while it encrypts: on these machines a
file copy is bound by the kernel's read and write work (page cache, tmpfs page allocation),
which runs without the GIL; two jobs keep two cores busy in the kernel while Python
encrypts. Each job is one worker-thread hop for its whole range, so the event loop only
starts the jobs and waits. Streams that can encrypt in place (OpenSSL's ``update_into``)
reuse one buffer per job: no allocation per segment, which on these VMs costs more than
the encryption itself (fresh pages fault in one by one).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kstream.auth import (
    FRAME_SIZE,
    TAG_SIZE,
    SegmentOpener,
    SegmentSealer,
    check_tag,
    parse_frame,
    plaintext_size,
)
from kstream.backends.base import BLOCK, CipherStream, InPlaceStream, counter_add
from kstream.errors import IOFailure, KstreamError
from kstream.format import HEADER_SIZE
from kstream.inplace import RawTransform, SealTransform, Transform
from kstream.pipeline import Progress, advance

OVERHEAD = FRAME_SIZE + TAG_SIZE
OpenStream = Callable[[bytes], CipherStream]
"""Opens a cipher stream whose counter starts at the given block."""


class LayoutMismatch(KstreamError):
    """A segment's frame is not where an intact file has it; the sequential reader, run
    instead, reports precisely what is wrong (truncation, trailing data, a bad segment)."""


def split_ranges(units: int, jobs: int) -> list[tuple[int, int]]:
    """``[0, units)`` as up to ``jobs`` contiguous, nearly equal ranges (one if empty)."""
    jobs = max(1, min(jobs, units))
    base, extra = divmod(units, jobs)
    ranges, start = [], 0
    for j in range(jobs):
        end = start + base + (1 if j < extra else 0)
        ranges.append((start, end))
        start = end
    return ranges


@dataclass
class _Job:
    """Units (segments) ``[first, first + units)``: input ``[in_start, in_end)``."""

    first: int
    units: int
    in_start: int
    in_end: int
    out_start: int
    last: bool  # holds the end of the file


class _Runner:
    """Runs one file's jobs in worker threads; reports the first error in file order."""

    def __init__(self, src_fd: int, dst_fd: int, names: tuple[str, str],
                 progress: Progress | None) -> None:
        self.src_fd, self.dst_fd = src_fd, dst_fd
        self.src_name, self.dst_name = names
        self.cancelled = threading.Event()
        self.loop = asyncio.get_running_loop()
        self.progress = progress

    def tick(self, n: int) -> None:
        if self.progress is not None:
            self.loop.call_soon_threadsafe(self.progress, n)

    def read(self, into: memoryview, offset: int) -> None:
        got = 0
        try:
            while got < len(into):
                n = os.preadv(self.src_fd, [into[got:]], offset + got)
                if n == 0:
                    raise IOFailure(f"{self.src_name} changed size while it was being read; "
                                    "try again")
                got += n
        except OSError as exc:
            raise IOFailure(f"cannot read {self.src_name}: {exc.strerror or exc}") from None

    def write(self, parts: list[bytes | memoryview], offset: int) -> int:
        views = [memoryview(p) for p in parts if len(p)]
        try:
            while views:
                n = os.pwritev(self.dst_fd, views, offset)
                offset += n
                advance(views, n)
        except OSError as exc:
            raise IOFailure(f"cannot write {self.dst_name}: {exc.strerror or exc}") from None
        return offset

    def stream_copy(self, job: _Job, chunk: int, transform: Callable[[bytes], bytes],
                    finish: Callable[[], bytes]) -> None:
        """The general path: any cipher stream, through a sealer/opener if given."""
        buf = bytearray(chunk)
        pos, out = job.in_start, job.out_start
        while pos < job.in_end:
            if self.cancelled.is_set():
                return
            n = min(chunk, job.in_end - pos)
            with memoryview(buf) as view:
                self.read(view[:n], pos)
            pos += n
            out = self.write([transform(bytes(buf[:n]))], out)
            self.tick(n)
        self.write([finish()], out)

    async def run(self, jobs: list[_Job], work: Callable[[_Job], None]) -> None:
        futures = [self.loop.run_in_executor(None, work, job) for job in jobs]
        try:
            results = await asyncio.shield(asyncio.gather(*futures, return_exceptions=True))
        except asyncio.CancelledError:
            self.cancelled.set()
            await asyncio.gather(*futures, return_exceptions=True)
            raise
        for result in results:
            if isinstance(result, BaseException):
                raise result


def _plan(units: int, jobs: int, unit_in: int, unit_out: int, size: int, in_base: int,
          out_base: int) -> list[_Job]:
    return [
        _Job(a, b - a, in_base + a * unit_in, in_base + min(b * unit_in, size),
             out_base + a * unit_out, b == units)
        for a, b in split_ranges(units, jobs)
    ]


async def encrypt_file_parallel(
    src_fd: int, dst_fd: int, size: int, *, iv: bytes, segment: int, jobs: int,
    open_stream: OpenStream, mac: AESGCM | None, prefix: bytes, names: tuple[str, str],
    progress: Progress | None = None, src_offset: int = 0,
) -> None:
    """Encrypt ``size`` bytes of ``src_fd`` from ``src_offset`` into ``dst_fd``.

    ``prefix`` (the header) is written first. ``mac`` None means raw mode: bare CTR.
    """
    runner = _Runner(src_fd, dst_fd, names, progress)
    runner.write([prefix], 0)
    if mac is None:
        plan = _plan(-(-size // segment), jobs, segment, segment, size, src_offset, 0)
    else:
        plan = _plan(size // segment + 1, jobs, segment, segment + OVERHEAD, size, src_offset,
                     len(prefix))

    def work(job: _Job) -> None:
        stream = open_stream(counter_add(iv, job.first * segment // BLOCK))
        try:
            if isinstance(stream, InPlaceStream):
                _encrypt_in_place(runner, job, stream, mac, segment)
            elif mac is None:
                runner.stream_copy(job, segment, stream.update, stream.finalize)
            else:
                seal = SegmentSealer(stream, mac, segment, job.first)
                runner.stream_copy(job, segment, seal.update,
                                   seal.finalize if job.last else seal.finish_range)
        finally:
            stream.close()

    await runner.run(plan, work)


def _encrypt_in_place(runner: _Runner, job: _Job, stream: InPlaceStream, mac: AESGCM | None,
                      segment: int) -> None:
    transform: Transform = (RawTransform(stream, segment) if mac is None
                            else SealTransform(stream, mac, segment, job.first))
    buf = bytearray(segment + BLOCK)
    pos, out = job.in_start, job.out_start
    with memoryview(buf) as view:
        for index in range(job.first, job.first + job.units):
            if runner.cancelled.is_set():
                return
            n = min(segment, job.in_end - pos)
            runner.read(view[:n], pos)
            pos += n
            last = job.last and index == job.first + job.units - 1
            out = runner.write(transform.process(view, n, last), out)
            runner.tick(n)


def parallel_decrypt_layout(file_size: int, segment: int) -> int | None:
    """The number of segments of an intact file of ``file_size`` bytes, else ``None``."""
    plain = plaintext_size(file_size - HEADER_SIZE, segment)
    return None if plain is None else plain // segment + 1


async def decrypt_file_parallel(
    src_fd: int, dst_fd: int, size: int, *, iv: bytes, segment: int, jobs: int,
    open_stream: OpenStream, mac: AESGCM | None, names: tuple[str, str],
    progress: Progress | None = None, src_offset: int = 0,
) -> None:
    """Decrypt ``src_fd`` (``size`` bytes from ``src_offset``, header included unless raw).

    For authenticated files the caller has checked :func:`parallel_decrypt_layout`; each
    job verifies a segment's tag before writing its plaintext. Raises
    :class:`LayoutMismatch` when a frame is not what an intact file has there.
    """
    runner = _Runner(src_fd, dst_fd, names, progress)
    if mac is None:
        plan = _plan(-(-size // segment), jobs, segment, segment, size, src_offset, 0)
    else:
        units = parallel_decrypt_layout(size, segment) or 0
        plan = _plan(units, jobs, segment + OVERHEAD, segment, size - HEADER_SIZE,
                     src_offset + HEADER_SIZE, 0)

    def work(job: _Job) -> None:
        stream = open_stream(counter_add(iv, job.first * segment // BLOCK))
        try:
            if isinstance(stream, InPlaceStream):
                if mac is None:
                    _encrypt_in_place(runner, job, stream, None, segment)
                else:
                    _open_in_place(runner, job, stream, mac, segment)
            elif mac is None:
                runner.stream_copy(job, segment, stream.update, stream.finalize)
            else:
                opener = SegmentOpener(stream, mac, segment, job.first)
                runner.stream_copy(job, segment + OVERHEAD, opener.update,
                                   opener.finalize if job.last else opener.finish_range)
        finally:
            stream.close()

    await runner.run(plan, work)


def _open_in_place(runner: _Runner, job: _Job, stream: InPlaceStream, mac: AESGCM,
                   segment: int) -> None:
    buf = bytearray(segment + OVERHEAD + BLOCK)
    pos, out = job.in_start, job.out_start
    with memoryview(buf) as view:
        for index in range(job.first, job.first + job.units):
            if runner.cancelled.is_set():
                return
            n = min(segment + OVERHEAD, job.in_end - pos)
            framed = view[:n]
            runner.read(framed, pos)
            pos += n
            expect_last = job.last and index == job.first + job.units - 1
            last, size = parse_frame(framed, 0, segment, index)
            if last != expect_last or size != n - OVERHEAD:
                raise LayoutMismatch(f"segment {index} is not laid out as in an intact file")
            ciphertext = view[FRAME_SIZE:FRAME_SIZE + size]
            check_tag(mac, index, last, ciphertext, view[FRAME_SIZE + size:n])
            with view[FRAME_SIZE:] as room:
                stream.update_into(ciphertext, room)  # in place
            out = runner.write([ciphertext], out)
            framed.release()
            ciphertext.release()
            runner.tick(n)
