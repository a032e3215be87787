"""Running one command's coroutine so that Ctrl-C and SIGTERM end it cleanly.

Both signals must cancel the work rather than kill the process, so that the API's cleanup
removes a partial output file before kstream exits; :mod:`kstream.cli.tui` says what
happened and with which status.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any

from kstream.cli import tui
from kstream.loop import loop_factory


async def _with_sigterm(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro``; SIGTERM cancels it (so cleanup runs) and becomes an exit of 143."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    terminated = False

    def on_sigterm() -> None:
        nonlocal terminated
        terminated = True
        task.cancel()

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        await coro
    except asyncio.CancelledError:
        if terminated:
            raise tui.interrupted(terminated=True) from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def run(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` on uvloop (or asyncio's loop), mapping Ctrl-C to :class:`Interrupted`.

    On failure the runner is deliberately not closed: closing waits for worker threads, and
    one may sit in a blocking read of a pipe that never ends. The console script exits with
    ``os._exit`` so nothing waits for it.
    """
    runner = asyncio.Runner(loop_factory=loop_factory())
    try:
        runner.run(_with_sigterm(coro))
    except KeyboardInterrupt:
        raise tui.interrupted() from None
    runner.close()
