"""Shared by the ``kstream bench`` tests: the fast settings, running the subcommand, a
kernel stream simulated with OpenSSL, and which peers are installed.

Never a timing assertion in these tests: these machines are shared and noisy. Budgets are tiny
so that each module takes a few seconds. The kernel rows are checked with a simulated kernel
(OpenSSL dressed as a kernel stream, the development hosts have no AF_ALG) and for real in
the ``kernel`` test of test_memory.py.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from kstream.backends.base import CipherOptions
from kstream.backends.openssl import OpenSSLStream
from kstream.bench import peers
from kstream.bench.cli import main

FAST = ["--seconds", "0.01", "--repeat", "1", "--key-bits", "128"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


class FakeKernelStream:
    """OpenSSL posing as a kernel stream: ``update_from_fd`` reads the fd like splice would.

    Records everything it was fed, so that the bench's pipe and memory-file plumbing can be
    checked byte for byte without AF_ALG.
    """

    def __init__(self, key: bytes, iv: bytes, options: CipherOptions) -> None:
        self._inner = OpenSSLStream(key, iv)
        self.options = options
        self.description = f"simulated kernel {options.driver}"
        self.fed = bytearray()

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        self.fed += data
        return self._inner.update(data)

    def finalize(self) -> bytes:
        return self._inner.finalize()

    def close(self) -> None:
        self._inner.close()

    def accepts_fd(self, fd: int) -> bool:
        return True

    def update_from_fd(self, fd: int, max_bytes: int) -> tuple[bytes, int]:
        data = os.read(fd, max_bytes)
        return self.update(data), len(data)


def check_rows(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        assert row["mb_s"] > 0 and row["ops_s"] > 0 and row["ops"] >= 1
        # MB/s and ops/s are medians of the same runs: exactly chunk apart.
        assert row["ops_s"] * row["chunk"] / 1e6 == pytest.approx(row["mb_s"], rel=1e-9)
        assert all(value > 0 for value in row["runs_mb_s"])


#: The peers of ``bench --files`` installed here (CI installs both).
AGE = peers.age_installed()
TINK = peers.tink_streaming_aead(128) is not None
#: Why Tink's own tests are skipped where it is missing.
TINK_MISSING = (
    "the tink package is not installed (the test extra installs it on Linux x86-64 "
    "before Python 3.15: it has no wheel for other platforms or for 3.15, and does "
    "not build from source)"
)
