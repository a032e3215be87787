"""Fixtures of the ``kstream bench`` tests."""

from __future__ import annotations

import pytest
from bench.support import FakeKernelStream

from kstream.backends.base import CipherOptions
from kstream.bench import memory


@pytest.fixture
def simulated_kernel(monkeypatch: pytest.MonkeyPatch) -> list[FakeKernelStream]:
    """A kernel backend with only the generic C driver, as inside User Mode Linux."""
    opened: list[FakeKernelStream] = []

    def open_stream(key: bytes, iv: bytes, options: CipherOptions) -> FakeKernelStream:
        stream = FakeKernelStream(key, iv, options)
        opened.append(stream)
        return stream

    monkeypatch.setattr(memory, "kernel_status", lambda: (True, "simulated"))
    monkeypatch.setattr(memory, "kernel_drivers", lambda: ["ctr(aes-generic)"])
    monkeypatch.setattr(memory, "open_kernel_stream", open_stream)
    monkeypatch.delenv("KSTREAM_IN_UML", raising=False)
    return opened
