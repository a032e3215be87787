"""Small async stream helpers shared by the tests."""

from __future__ import annotations

import errno
import os
import subprocess
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    import pytest

    from kstream.keys.key import Key


class Collect:
    """A Sink that keeps everything written to it."""

    def __init__(self) -> None:
        self.data = bytearray()

    async def write(self, data: bytes) -> None:
        self.data += data


async def one(data: bytes) -> AsyncIterator[bytes]:
    """An async source that yields ``data`` in one piece."""
    yield data


async def each(pieces: list[bytes]) -> AsyncIterator[bytes]:
    """An async source that yields ``pieces`` one by one."""
    for piece in pieces:
        yield piece


def corrupt_kernel_output(monkeypatch: pytest.MonkeyPatch, offset: int = 100) -> None:
    """Make every kernel stream flip one bit at ``offset`` of an update's output, as a
    faulty driver would; for checking that ``--verify`` catches it."""
    from kstream.backends.kernel.ctr import KernelStream

    real_update = KernelStream.update

    def corrupt(self: KernelStream, data: bytes | bytearray | memoryview) -> bytes:
        out = bytearray(real_update(self, data))
        if len(out) > offset:
            out[offset] ^= 1
        return bytes(out)

    monkeypatch.setattr(KernelStream, "update", corrupt)


class NoInPlace:
    """OpenSSL CTR behind only the :class:`~kstream.backends.base.CipherStream` methods (no
    ``update_into``), so the codec must take its general path: new bytes per call, as with
    the kernel backend. Optionally holds output back to whole blocks, as the kernel does."""

    description = "openssl without update_into (test double)"

    def __init__(self, key: bytes, iv: bytes, blockwise: bool = False) -> None:
        from kstream.backends.openssl import OpenSSLStream

        self._inner = OpenSSLStream(key, iv)
        self._blockwise = blockwise
        self._pending = bytearray()
        self.updates = 0

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        self.updates += 1
        self._pending += self._inner.update(data)
        n = len(self._pending) // 16 * 16 if self._blockwise else len(self._pending)
        out = bytes(self._pending[:n])
        del self._pending[:n]
        return out

    def finalize(self) -> bytes:
        out = bytes(self._pending) + self._inner.finalize()
        self._pending.clear()
        return out

    def close(self) -> None:
        self._inner.close()


class NoInPlaceBackend:
    """A backend whose streams are :class:`NoInPlace` (for ``Plan.backend``)."""

    name = "openssl-no-update-into"

    def __init__(self, blockwise: bool = False) -> None:
        self.blockwise = blockwise
        self.opened = 0

    def probe(self) -> Any:
        from kstream.backends.openssl import OpenSSLBackend

        return OpenSSLBackend().probe()

    def open(self, key: Key, iv: bytes, options: Any = None) -> NoInPlace:
        self.opened += 1
        return NoInPlace(key.material(), iv, self.blockwise)


def open_fifo_writer(
    path: str | os.PathLike[str], reader: subprocess.Popen[bytes], timeout: float = 30
) -> BinaryIO:
    """Open the FIFO ``path`` for writing once ``reader`` (a process) has opened it; fail
    with the reader's stderr if it exits first, instead of blocking for good in ``open``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                raise
        if reader.poll() is not None:
            err = reader.stderr.read().decode(errors="replace") if reader.stderr else ""
            raise AssertionError(
                f"the reader exited ({reader.returncode}) before opening {path}: {err}"
            )
        assert time.monotonic() < deadline, f"nothing opened {path} for reading in {timeout} s"
        time.sleep(0.01)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "wb")


async def encrypt_to(
    source: Any,
    sink: Any,
    *,
    key: Key | None = None,
    passphrase: Any = None,
    work_factor: int | None = None,
    backend: Any = "openssl",
    header: Any = None,
    header_iv: bytes | None = None,
) -> None:
    """Encrypt an engine Source into a Sink with a chosen header or IV: how the published
    test vectors are reproduced (the API always makes a fresh random IV)."""
    from kstream.engine.drive import run
    from kstream.engine.plan import RunOptions, planned
    from kstream.keys.unlock import make_secret

    secret = make_secret(key, passphrase, work_factor)
    options = RunOptions(notify=lambda _: None, backend=backend)
    with planned(True, secret, options, raw_iv=None, header=header, header_iv=header_iv) as plan:
        await run(plan, source, sink)


async def decrypt_to(
    source: Any,
    sink: Any,
    *,
    key: Key | None = None,
    passphrase: Any = None,
    backend: Any = "openssl",
) -> None:
    """Decrypt a kstream file from an engine Source into a Sink."""
    from kstream.api import read_header
    from kstream.engine.drive import run
    from kstream.engine.plan import RunOptions, planned
    from kstream.keys.unlock import make_secret

    secret = make_secret(key, passphrase)
    options = RunOptions(notify=lambda _: None, backend=backend)
    header = await read_header(source)
    with planned(False, secret, options, raw_iv=None, header=header) as plan:
        await run(plan, source, sink)
