"""Running a plan: the async drivers chosen for the source and sink at hand.

The plan (:mod:`kstream.engine.plan`) has decided everything that depends on the user's
choices; this module only picks the driver that moves the data (fd stream, async iterable or
parallel file ranges) and runs the plan's codec through it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable

from kstream.backends.base import CipherOptions
from kstream.engine.fdio import FdSink, FdSource
from kstream.engine.iterate import Sink, Source, iterate
from kstream.engine.pipe import accepts_fd, pump, pump_from_fd
from kstream.engine.plan import Plan
from kstream.engine.ranges import plan_ranges, run_ranges
from kstream.format import OVERHEAD, segment_count

Progress = Callable[[int], None]


# --- choosing the driver ----------------------------------------------------------------------


async def run_fds(
    plan: Plan, source: FdSource, sink: FdSink, progress: Progress | None = None
) -> None:
    """The fd stream driver (after the prefix has been written)."""
    codec = plan.codec()
    try:
        if accepts_fd(codec, source):
            await pump_from_fd(source, codec, sink, progress)
        else:
            await pump(source, codec, sink, progress)
    finally:
        codec.cipher.close()


async def run_iterable(
    plan: Plan, source: Source, progress: Progress | None = None
) -> AsyncGenerator[bytes | bytearray, None]:
    """The async-iterable driver: yields the prefix, then each segment's output."""
    codec = plan.codec()
    try:
        if plan.prefix:
            yield plan.prefix
        outputs = iterate(source, codec, progress)
        try:
            async for out in outputs:
                yield out
        finally:
            # Closed explicitly, so that its read-ahead has stopped before the cipher closes.
            await outputs.aclose()
    finally:
        codec.cipher.close()


async def run(
    plan: Plan, source: Source, sink: Sink | FdSink, progress: Progress | None = None
) -> None:
    """Everything from ``source`` through the plan into ``sink``: fd to fd by the fd stream
    driver, anything else by the async-iterable driver."""
    if isinstance(source, FdSource) and isinstance(sink, FdSink):
        if plan.prefix:
            sink.write_buffers([plan.prefix])
        await run_fds(plan, source, sink, progress)
        return
    async for out in run_iterable(plan, source, progress):
        await sink.write(bytes(out) if not isinstance(out, bytes) else out)


def ranges_apply(source: FdSource, options: CipherOptions | None) -> bool:
    """Whether the file ranges driver can take this input: a regular file, and no explicit
    splice/sendfile transfer (those are kept to the fd stream driver)."""
    if not source.is_regular():
        return False
    return options is None or options.transfer in ("auto", "sendmsg")


async def run_ranges_plan(
    plan: Plan,
    source: FdSource,
    sink: FdSink,
    size: int,
    base: int,
    jobs: int,
    progress: Progress | None = None,
) -> bool:
    """Run ``size`` bytes of ``source`` from ``base`` (its header included when
    decrypting a kstream file) by parallel ranges into ``sink``; False if the input's size
    fits no intact file (the fd stream driver then says exactly what is wrong)."""
    unit = plan.segment
    if plan.header is None:
        ranges = plan_ranges(-(-size // unit), jobs, unit, unit, size, base, 0)
    elif plan.encrypt:
        prefix = plan.prefix
        sink.pwrite_buffers([prefix], 0)
        ranges = plan_ranges(size // unit + 1, jobs, unit, unit + OVERHEAD, size, base, len(prefix))
    else:
        head = plan.header.size  # the fixed header and, in a passphrase file, its block
        count = segment_count(size - head, unit)
        if count is None:
            return False
        ranges = plan_ranges(count, jobs, unit + OVERHEAD, unit, size - head, base + head, 0)
    await run_ranges(source, sink, ranges, plan.codec, progress)
    return True
