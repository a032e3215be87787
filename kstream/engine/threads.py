"""Worker threads under asyncio: the one rule for cancelling them, and running stages.

The event loop only orchestrates; every blocking step (a read, a cipher call, a write) runs
in a worker thread. A cancelled caller must still wait for its worker to return before the
cancellation goes on, or the cipher stream would be closed while the worker still uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def wait_for_worker(future: asyncio.Future[T], stop: Callable[[], None] | None = None) -> T:
    """Await a worker thread's ``future``; if cancelled, call ``stop`` (which asks the
    worker to return at its next step), wait for the worker, then re-raise."""
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        if stop is not None:
            stop()
        with contextlib.suppress(Exception):  # the cancellation is what matters now
            await future
        raise


def from_worker(progress: Callable[[int], None] | None) -> Callable[[int], None] | None:
    """``progress`` made callable from a worker thread: each call is run on this loop
    (progress bars and callers' callbacks are not thread-safe). Call it on the loop."""
    if progress is None:
        return None
    loop = asyncio.get_running_loop()

    def report(n: int) -> None:
        loop.call_soon_threadsafe(progress, n)

    return report


async def run_blocking(fn: Callable[..., T], *args: object, wait_on_cancel: bool = True) -> T:
    """Run ``fn(*args)`` in the default executor.

    With ``wait_on_cancel`` a cancelled caller waits for the thread (:func:`wait_for_worker`).
    Reads that may block forever (a pipe) pass ``False``.
    """
    future = asyncio.get_running_loop().run_in_executor(None, fn, *args)
    if not wait_on_cancel:
        return await future
    return await wait_for_worker(future)


async def run_together(*stages: Coroutine[Any, Any, None]) -> None:
    """Run stages concurrently; if one fails, cancel the rest and raise its error itself
    (not the task group's wrapper), so callers see kstream's own exceptions."""
    try:
        async with asyncio.TaskGroup() as tg:
            for stage in stages:
                tg.create_task(stage)
    except BaseExceptionGroup as group:
        raise first_error(group) from None


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error that made a task group fail (its other tasks were only cancelled)."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc
