"""glibc malloc settings for streaming megabyte-sized buffers between threads.

kstream hands ~1 MiB buffers between worker threads. With glibc's defaults each worker
thread gets its own malloc arena, and a buffer allocated in one thread and freed in
another keeps returning memory to the OS and faulting it back in page by page, which
doubles the time of ``encrypt_stream`` (measured in docs/benchmark.md, "Malloc settings").
Memory use stays bounded: kstream never has more than a few segments in flight, so the heap
stays small whatever the trim threshold.

This changes process-wide allocator settings, so it is applied once, when kstream first
runs the coroutine API (the command line: before its event loop starts), and only on glibc;
elsewhere it does nothing. A small file that the command line encrypts without an event loop
or worker thread (:mod:`kstream.engine.small`) skips it: importing ``ctypes`` alone takes
longer than encrypting such a file.
"""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

_applied: bool | None = None


def tune_malloc() -> bool:
    """Apply the settings above (once); return whether glibc accepted them."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    try:  # "glibc 2.36"; the platform module would read the executable to find out
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return False
    except (ValueError, OSError):  # not a name this system knows
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    results = [
        mallopt(M_ARENA_MAX, 1),
        mallopt(M_MMAP_THRESHOLD, 32 << 20),
        mallopt(M_TRIM_THRESHOLD, 64 << 20),
    ]
    return all(r == 1 for r in results)
