"""The file ranges driver: a regular input file into a regular output file, in parallel.

CTR is seekable: the keystream for byte offset ``o`` starts at counter ``IV + o/16``. So a
file can be cut into ranges of whole segments that are processed concurrently, each by its
own codec and cipher stream (with the kernel backend, its own AF_ALG socket), read with
``pread`` and written with ``pwrite`` straight to where the fd stream driver puts them:
segment ``i`` of an authenticated file always sits at ``H + i * (S + 20)`` (H: the header's
size, 32, or 52 with a passphrase block), its plaintext at ``i * S``. Output is
byte-identical to the other drivers (a test checks this).

Why it pays although ``cryptography`` holds the GIL while it encrypts: a file copy is bound
by the kernel's read and write work (page cache, tmpfs page allocation), which runs without
the GIL; two ranges keep two cores busy in the kernel while Python encrypts. Each range is
one worker-thread hop, so the event loop only starts them and waits; each reuses its
buffers. Ranges after the first allocate theirs only once segment 0 has gone through
its codec (for decryption: its tag verified), because the segment size comes from a header
that nothing has authenticated before that.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass

from kstream.backends.base import BLOCK
from kstream.engine.fdio import FdSink, FdSource
from kstream.engine.threads import from_worker, wait_for_worker
from kstream.segments import Codec

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Range:
    """Segments ``[first, first + count)``: input bytes ``[in_start, in_end)``, output
    from ``out_start``."""

    first: int
    count: int
    in_start: int
    in_end: int
    out_start: int


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


def plan_ranges(
    segments: int, jobs: int, unit_in: int, unit_out: int, size: int, in_base: int, out_base: int
) -> list[Range]:
    """The ranges for ``segments`` segments of ``unit_in`` input bytes each (``size`` in
    all, from ``in_base``), written ``unit_out`` bytes apart from ``out_base``."""
    return [
        Range(
            a,
            b - a,
            in_base + a * unit_in,
            in_base + min(b * unit_in, size),
            out_base + a * unit_out,
        )
        for a, b in split_ranges(segments, jobs)
    ]


async def run_ranges(
    source: FdSource,
    sink: FdSink,
    ranges: list[Range],
    open_codec: Callable[[int], Codec],
    progress: Progress | None = None,
) -> None:
    """Run each range through its own codec (``open_codec(first segment)``), concurrently;
    the first error in file order is raised, after every range has stopped."""
    loop = asyncio.get_running_loop()
    cancelled = threading.Event()
    #: Set once segment 0 went through its codec, or when the run is over for any reason.
    first_done = threading.Event()

    tick = from_worker(progress)

    def work(job: Range) -> None:
        if job.first != 0:
            first_done.wait()
            if cancelled.is_set():
                return
        try:
            codec = open_codec(job.first)
        except BaseException:
            if job.first == 0:
                cancelled.set()
                first_done.set()
            raise
        try:
            buf = bytearray(codec.unit + BLOCK)
            pos, out = job.in_start, job.out_start
            with memoryview(buf) as view:
                for _ in range(job.count):
                    if cancelled.is_set():
                        return
                    n = min(codec.unit, job.in_end - pos)
                    source.pread_into(view[:n], pos)
                    pos += n
                    out = sink.pwrite_buffers(codec.process(view, n, n < codec.unit), out)
                    if tick is not None:
                        tick(n)
                    first_done.set()
        except BaseException:
            if job.first == 0 and not first_done.is_set():
                cancelled.set()  # segment 0 failed: the other ranges need not start
            raise
        finally:
            first_done.set()  # whatever happened, nobody waits for it any longer
            codec.cipher.close()

    def stop() -> None:
        cancelled.set()
        first_done.set()

    futures = [loop.run_in_executor(None, work, job) for job in ranges]
    results = await wait_for_worker(asyncio.gather(*futures, return_exceptions=True), stop)
    for result in results:
        if isinstance(result, BaseException):
            raise result
