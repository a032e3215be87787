"""Running one command's work so that Ctrl-C and SIGTERM end it cleanly.

Both signals must stop the work rather than kill the process, so that the cleanup removes a
partial output file before kstream exits; :mod:`kstream.cli.tui` says what happened and
with which status. Work is a coroutine (:func:`run`) or, for a small file that is not worth
an event loop, a plain call (:func:`run_sync`); asyncio is imported only for the first.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

from kstream.cli import tui
from kstream.errors import Interrupted

# signal's C core: the signal module wraps every signal and handler in enums, which costs
# more start-up time than a small file takes to encrypt. The types are signal's (typeshed
# has no stub for _signal).
if TYPE_CHECKING:
    import signal as _signal
else:
    import _signal

T = TypeVar("T")


def run_sync(work: Callable[[], T]) -> T:
    """Call ``work`` with Ctrl-C and SIGTERM raised as exceptions in it (so its cleanup
    runs), ending as :func:`run` ends: exit 130 or 143."""

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise tui.interrupted(terminated=True)

    previous = _signal.signal(_signal.SIGTERM, on_sigterm)
    try:
        return work()
    except KeyboardInterrupt:
        raise tui.interrupted() from None
    finally:
        _signal.signal(_signal.SIGTERM, previous)


async def _with_signals(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro``; Ctrl-C or SIGTERM cancels it (so cleanup runs) and becomes an exit of
    130 or 143. One signal is enough: nothing the cleanup waits for can block (a FIFO that
    never opens, a terminal that is never typed into). A second one ends the process at
    once, for whatever does block."""
    import asyncio
    import os

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    got: list[int] = []

    def on_signal(signum: int) -> None:
        if got:
            tui.error(
                f"{'terminated' if signum == _signal.SIGTERM else 'interrupted'} "
                "again: stopping at once (a partial output file may remain)"
            )
            os._exit(tui.EXIT_SIGTERM if signum == _signal.SIGTERM else Interrupted.exit_code)
        got.append(signum)
        if signum == _signal.SIGINT:
            tui.ctrl_c_seen()
        task.cancel()

    for signum in (_signal.SIGINT, _signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await coro
    except asyncio.CancelledError:
        if got:
            raise tui.interrupted(terminated=got[0] == _signal.SIGTERM) from None
        raise
    finally:
        for signum in (_signal.SIGINT, _signal.SIGTERM):
            loop.remove_signal_handler(signum)


def run(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` on uvloop (or asyncio's loop), mapping Ctrl-C to :class:`Interrupted`.

    On failure the runner is deliberately not closed: closing waits for worker threads, and
    one may sit in a blocking read of a pipe that never ends. The console script exits with
    ``os._exit`` so nothing waits for it.
    """
    import asyncio

    from kstream.loop import loop_factory
    from kstream.memory import tune_malloc

    tune_malloc()  # before the loop starts any worker thread (see kstream.memory)
    runner = asyncio.Runner(loop_factory=loop_factory())
    try:
        runner.run(_with_signals(coro))
    except KeyboardInterrupt:
        raise tui.interrupted() from None
    runner.close()
