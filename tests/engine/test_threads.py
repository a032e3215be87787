"""kstream.engine.threads: a cancelled caller waits for its worker; stage errors come out bare."""

from __future__ import annotations

import asyncio
import threading

import pytest

from kstream.engine.threads import first_error, run_blocking, run_together, wait_for_worker
from kstream.errors import IOFailure


async def test_cancelled_caller_stops_and_waits_for_its_worker() -> None:
    """The cipher stream is closed after the cancellation goes on, so the worker must have
    returned by then: ``stop`` is called and the worker's end awaited first."""
    started, release = threading.Event(), threading.Event()
    finished: list[bool] = []

    def worker() -> None:
        started.set()
        release.wait(10)
        finished.append(True)

    # The task must be inside wait_for_worker (past its ``try``) when it is cancelled. That
    # the worker thread has started says nothing about the task: it may not have run its
    # first step yet (it had not, on 3.14 and 3.15), and a task cancelled before its first
    # step never enters the coroutine. ``entered`` is set in the task's first step, which
    # goes on without a pause into wait_for_worker up to its first await, inside the
    # ``try``: once the test sees it, the task is there.
    entered = asyncio.Event()

    async def caller(future: asyncio.Future[None]) -> None:
        entered.set()
        await wait_for_worker(future, release.set)

    future = asyncio.get_running_loop().run_in_executor(None, worker)
    task = asyncio.create_task(caller(future))
    await asyncio.wait_for(entered.wait(), 10)
    assert await asyncio.to_thread(started.wait, 10)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished == [True]


async def test_run_blocking_returns_the_result_and_raises_the_error() -> None:
    assert await run_blocking(sum, [1, 2, 3]) == 6
    with pytest.raises(ZeroDivisionError):
        await run_blocking(divmod, 1, 0)


async def test_run_blocking_without_waiting_leaves_a_stuck_read_behind() -> None:
    """A read from a pipe that never ends must not hold up a cancellation."""
    started, release = threading.Event(), threading.Event()

    def read() -> None:
        started.set()
        release.wait(10)

    task = asyncio.create_task(run_blocking(read, wait_on_cancel=False))
    # The task starts the thread in its first step and then awaits it within that step: the
    # thread's start, seen from this task, means the task is waiting (not merely a sleep).
    assert await asyncio.to_thread(started.wait, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
    assert not release.is_set()
    release.set()


async def test_run_together_raises_the_failing_stage_error_and_cancels_the_rest() -> None:
    """Callers see kstream's own exception, not a task group wrapper, and no stage runs on."""
    cancelled: list[bool] = []

    async def fails() -> None:
        await asyncio.sleep(0.01)
        raise IOFailure("cannot write out: No space left on device")

    async def waits() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    with pytest.raises(IOFailure, match="No space left on device"):
        await asyncio.wait_for(run_together(fails(), waits()), 5)
    assert cancelled == [True]


async def test_run_together_runs_every_stage() -> None:
    done: list[int] = []

    async def stage(i: int) -> None:
        await asyncio.sleep(0)
        done.append(i)

    await run_together(stage(1), stage(2), stage(3))
    assert sorted(done) == [1, 2, 3]


def test_first_error_unwraps_nested_groups() -> None:
    inner = ValueError("the one")
    group = BaseExceptionGroup("outer", [BaseExceptionGroup("inner", [inner, KeyError()])])
    assert first_error(group) is inner
