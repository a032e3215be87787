"""Which event loop kstream runs on: uvloop when it imports, else asyncio's default.

Why a module of its own: the library should run on the loop the command line runs on, so
that library and CLI numbers compare like with like, and a program that streams through
kstream awaits once or more per MiB (its own reads and writes, kstream's worker-thread
hops), each a round trip through the loop, which uvloop makes cheaper (measured in
docs/benchmark.md, "The event loop and malloc settings"). uvloop is a dependency on every
platform it supports; where it is missing this falls back without complaint.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """``uvloop.new_event_loop`` when uvloop imports, else ``None`` (asyncio's default)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a new event loop, as :func:`asyncio.run` does, but on
    uvloop when it is installed (what the ``kstream`` command uses).

    A convenience, not a requirement: every kstream coroutine works on any asyncio loop.
    """
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(coro)
