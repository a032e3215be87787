"""Whether two buffers share memory: the rule OpenSSL's ``update_into`` must be given.

cryptography 51 and later refuse overlapping buffers themselves; older releases (the
lowest versions CI also runs) accept them and, for buffers that overlap at an offset,
give wrong output. The root conftest holds every in-process ``update_into`` call to this
rule, so a path that hands it overlapping buffers fails whichever release is installed.
"""

from __future__ import annotations

import ctypes

Buffer = bytes | bytearray | memoryview


def span(buf: Buffer) -> tuple[int, int] | None:
    """``(first address, end address)`` of a writable buffer's memory; None for a read-only
    one, which no output buffer can share (an output must be writable)."""
    with memoryview(buf) as view:
        if view.readonly or view.nbytes == 0:
            return None
        with view.cast("B") as flat:
            array = (ctypes.c_char * flat.nbytes).from_buffer(flat)
            start, size = ctypes.addressof(array), flat.nbytes
            del array  # the export must end before the views are released
    return start, start + size


def overlap(a: Buffer, b: Buffer) -> bool:
    """Whether ``a`` and ``b`` share at least one byte."""
    sa, sb = span(a), span(b)
    if sa is None or sb is None:
        return False
    return sa[0] < sb[1] and sb[0] < sa[1]
