"""A small regular file into a new file, synchronously: no event loop, no worker thread.

For a file of a few KiB the work is nothing next to starting the process, and asyncio,
uvloop and the async drivers cost more to import than such a file takes to encrypt; a
backup script that runs one command per file pays that on every file. So an input of at
most :data:`SMALL` bytes is read whole, put through the same plan and codec as any other
run, segment by segment in the calling thread, and written through the same
:class:`~kstream.atomic.AtomicFile`. The bytes written, and every error, are those of the
fd stream driver: the codec sees the same segments, ending the same way.

The size is checked before the file is read, so the read takes at most :data:`SMALL` + 1
bytes: a file that grew in between is handed back to the caller, which streams it.
"""

from __future__ import annotations

import os
import stat

from kstream.atomic import AtomicFile, check_output_path, output_changed
from kstream.backends.base import BLOCK
from kstream.engine.plan import RunOptions, parse_header, planned
from kstream.errors import io_errors
from kstream.format import header_size
from kstream.keys.unlock import Secret
from kstream.segments import Codec

#: The largest input taken whole: a few segments, small enough to hold twice in memory.
SMALL = 1 << 20


def small_input(path: str) -> bool:
    """Whether ``path`` is a regular file of at most :data:`SMALL` bytes (anything else,
    or a file that cannot be stat'ed, is left to the async path and its error messages)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size <= SMALL


def run_whole(codec: Codec, data: memoryview) -> list[bytes]:
    """``data`` through ``codec`` one unit at a time, as a stream driver would read it: a
    unit shorter than the codec's ends the input (an empty one if ``data`` ends on a unit
    boundary)."""
    unit = codec.unit
    buffer = bytearray(unit + BLOCK)
    outputs: list[bytes] = []
    with memoryview(buffer) as view:
        offset = 0
        while True:
            n = min(unit, len(data) - offset)
            view[:n] = data[offset : offset + n]
            last = n < unit
            outputs += (bytes(out) for out in codec.process(view, n, last))
            offset += n
            if last:
                return outputs


def _write_all(fd: int, data: bytes, name: str) -> None:
    with io_errors("write", name), memoryview(data) as view:
        done = 0
        while done < len(view):
            done += os.write(fd, view[done:])


def _read_at_most(fd: int, limit: int) -> bytes:
    """Up to ``limit`` bytes from ``fd``, fewer only at its end: first the size the file has
    and one byte more, to see the end without a buffer of ``limit`` bytes (zeroing one costs
    more than encrypting a small file), then, only if it has grown, the rest at once."""
    parts: list[bytes] = []
    got = 0
    ask = min(os.fstat(fd).st_size + 1, limit)
    while got < limit and (part := os.read(fd, ask)):
        parts.append(part)
        got += len(part)
        ask = limit - got
    return b"".join(parts)


def process_small_file(
    encrypt: bool,
    src: str,
    dst: str,
    secret: Secret,
    run: RunOptions,
    *,
    raw_iv: bytes | None,
    force: bool = False,
) -> bool:
    """Encrypt or decrypt the small regular file ``src`` into the new file ``dst``
    (``raw_iv``: see :func:`~kstream.engine.raw.check_iv`). False, having written
    nothing and derived no key, if ``src`` holds more than :data:`SMALL` bytes by now:
    the caller runs it through the streaming path instead, whose output it is."""
    if check_output_path(dst, force=force, src=src):  # the caller's check said otherwise
        raise output_changed(dst)
    with io_errors("open input", f"'{src}'"):
        fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with io_errors("read", f"input '{src}'"):
            data = _read_at_most(fd, SMALL + 1)
    finally:
        os.close(fd)
    if len(data) > SMALL:
        return False
    # The whole header (a passphrase file's is longer), or what there is of it: parsed as
    # kstream.api.read_header parses what a stream gives, so a short one fails alike.
    header = None if encrypt or raw_iv is not None else parse_header(data[: header_size(data)])
    body = memoryview(data)[0 if header is None else header.size :]
    with planned(encrypt, secret, run, raw_iv=raw_iv, header=header) as plan:
        codec = plan.codec()
        try:
            result = b"".join([plan.prefix, *run_whole(codec, body)])
        finally:
            codec.cipher.close()
    out = AtomicFile(dst, force=force)
    try:
        _write_all(out.fd, result, f"output '{dst}'")
        out.commit()
    except BaseException:
        out.abort()
        raise
    return True
