"""kstream.run: uvloop when installed (the CLI's loop), asyncio's default otherwise."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import pytest

import kstream
from kstream import loop


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_run_uses_uvloop_when_installed() -> None:
    uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed here")
    assert loop.loop_factory() is uvloop.new_event_loop
    assert kstream.run(_loop_module()).startswith("uvloop")


def test_run_falls_back_to_asyncio_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes ``import uvloop`` fail
    assert loop.loop_factory() is None
    assert kstream.run(_loop_module()).startswith("asyncio")


def test_run_returns_the_result_and_raises_errors() -> None:
    async def fail() -> None:
        raise kstream.UsageError("nope")

    async def answer() -> int:
        return 42

    assert kstream.run(answer()) == 42
    with pytest.raises(kstream.UsageError, match="nope"):
        kstream.run(fail())


def test_run_encrypts_the_same_bytes_as_asyncio_run() -> None:
    """The loop changes nothing but speed: a raw encryption with a fixed IV is identical."""
    key = kstream.Key(bytes(range(16)))
    iv = bytes(16)
    data = bytes(range(256)) * 5000

    async def collect() -> bytes:
        async def source() -> AsyncIterator[bytes]:
            yield data

        return b"".join(
            [
                p
                async for p in kstream.encrypt_stream(
                    source(), key=key, backend="openssl", raw=True, iv=iv
                )
            ]
        )

    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    expected = Cipher(algorithms.AES(bytes(range(16))), modes.CTR(iv)).encryptor().update(data)
    assert kstream.run(collect()) == expected == asyncio.run(collect())
