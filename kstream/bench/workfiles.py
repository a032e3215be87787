"""The files of ``kstream bench --files``: where they go, the input, and checks of outputs.

Separate from the runs themselves (:mod:`kstream.bench.commands`) because these only touch
the filesystem: the input is generated here, and every entry's first output is compared here
before any of its times is trusted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator

from kstream.bench.units import MIB
from kstream.errors import KstreamError

#: Filesystems whose files are RAM: a run there measures CPU work, not a disk's writeback.
MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs", "hugetlbfs"})
#: The shared-memory tmpfs: files there are RAM, so a run measures CPU work, not a disk.
SHM = "/dev/shm"  # noqa: S108 - a scratch directory of our own is made inside it


def default_dir() -> str:
    """:data:`SHM` where it exists, else the temp directory."""
    if os.path.isdir(SHM) and os.access(SHM, os.W_OK | os.X_OK):
        return SHM
    return tempfile.gettempdir()


def filesystem_type(path: str) -> str:
    """The type of the filesystem ``path`` is on (``tmpfs``, ``ext4``...), from mountinfo."""
    target = os.path.realpath(path)
    best, fstype = "", "unknown"
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if " - " not in line or len(fields) < 5:
                    continue
                mount = fields[4].replace("\\040", " ")
                inside = target == mount or target.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) >= len(best):
                    best, fstype = mount, line.split(" - ", 1)[1].split()[0]
    except OSError:
        pass
    return fstype


def generate_file(path: str, size: int) -> None:
    """``size`` bytes that do not compress: 1 MiB from the CSPRNG, each copy numbered.

    Cheap (one urandom call) yet no two MiB are equal, so nothing downstream can shortcut.
    """
    block = bytearray(os.urandom(MIB))
    with open(path, "wb") as f:
        index = 0
        written = 0
        while written < size:
            block[:8] = index.to_bytes(8, "big")
            piece = min(MIB, size - written)
            f.write(memoryview(block)[:piece])
            written += piece
            index += 1


def same_content(a: str, b: str) -> bool:
    """Whether two files hold the same bytes, read in steps so that any size fits."""
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x = fa.read(4 * MIB)
            if x != fb.read(4 * MIB):
                return False
            if not x:
                return True


def fsync_path(path: str) -> None:
    """Flush ``path`` to its disk, as kstream does with its outputs (free on tmpfs)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink_quietly(path: str) -> None:
    """Remove ``path`` if it is there: a round starts and ends without its output."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def decrypts_to(path: str, reference: str, key_path: str) -> bool:
    """Whether the kstream file ``path`` decrypts (authenticated) to ``reference``'s bytes.

    Streams and compares piece by piece, so the check needs no room for another copy.
    """
    from kstream.api import decrypt_stream
    from kstream.keys.key import Key

    key = Key.from_file(key_path)

    async def compare() -> bool:
        with open(path, "rb") as src, open(reference, "rb") as ref:

            async def chunks() -> AsyncIterator[bytes]:
                while data := src.read(MIB):
                    yield data

            try:
                async for piece in decrypt_stream(chunks(), key=key, backend="openssl"):
                    if ref.read(len(piece)) != piece:
                        return False
            except KstreamError:
                return False
            return ref.read(1) == b""

    return asyncio.run(compare())
