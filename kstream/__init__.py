"""kstream: streaming AES-CTR for files and pipes, through the Linux kernel crypto API
(AF_ALG) or OpenSSL.

The coroutine API::

    key = kstream.Key.from_file("secret.key")
    await kstream.encrypt_file("data.tar", "data.tar.kst", key=key)
    async for piece in kstream.decrypt_stream(chunks, key=key): ...

    session = kstream.Session(key=key)  # the backend resolved once for many runs
    for name in names:
        await session.encrypt_file(name, name + ".kst")

run from ``kstream.run(main())`` (uvloop when installed) or any asyncio event loop.

The public API is the names in ``__all__`` below (docs/library.md describes them). Every
other module and name is internal and may change between releases.
"""

from __future__ import annotations

#: ``typing`` costs more to import than the rest of ``kstream --version`` (mypy reads this
#: name as ``typing.TYPE_CHECKING``).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from kstream.api import Session, decrypt_file, decrypt_stream, encrypt_file, encrypt_stream
    from kstream.backends.base import CipherOptions
    from kstream.errors import (
        BackendFailure,
        BackendUnavailable,
        FormatError,
        IntegrityError,
        Interrupted,
        InvalidKey,
        IOFailure,
        KstreamError,
        UsageError,
    )
    from kstream.fileobj.aio import AsyncFile, open_async
    from kstream.fileobj.opener import open
    from kstream.fileobj.reader import DecryptedFile
    from kstream.fileobj.writer import EncryptingFile
    from kstream.format import CipherSuite, Header
    from kstream.keys.key import Key
    from kstream.loop import run

__version__ = "0.1.0"

#: Loaded on first use: asyncio, uvloop and OpenSSL cost more start-up time than a small
#: file takes to encrypt, and ``kstream --version``, ``keygen`` or ``key list`` need none
#: (``--version`` not even the exceptions, whose module imports ``contextlib``).
_LAZY = {
    "BackendFailure": "kstream.errors",
    "BackendUnavailable": "kstream.errors",
    "FormatError": "kstream.errors",
    "IntegrityError": "kstream.errors",
    "Interrupted": "kstream.errors",
    "InvalidKey": "kstream.errors",
    "IOFailure": "kstream.errors",
    "KstreamError": "kstream.errors",
    "UsageError": "kstream.errors",
    "decrypt_file": "kstream.api",
    "decrypt_stream": "kstream.api",
    "encrypt_file": "kstream.api",
    "encrypt_stream": "kstream.api",
    "Session": "kstream.api",
    "run": "kstream.loop",
    "open": "kstream.fileobj.opener",
    "open_async": "kstream.fileobj.aio",
    "AsyncFile": "kstream.fileobj.aio",
    "DecryptedFile": "kstream.fileobj.reader",
    "EncryptingFile": "kstream.fileobj.writer",
    "CipherOptions": "kstream.backends.base",
    "CipherSuite": "kstream.format",
    "Header": "kstream.format",
    "Key": "kstream.keys.key",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kstream' has no attribute '{name}'")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AsyncFile",
    "BackendFailure",
    "BackendUnavailable",
    "CipherOptions",
    "CipherSuite",
    "DecryptedFile",
    "EncryptingFile",
    "FormatError",
    "Header",
    "IOFailure",
    "IntegrityError",
    "Interrupted",
    "InvalidKey",
    "Key",
    "KstreamError",
    "Session",
    "UsageError",
    "__version__",
    "decrypt_file",
    "decrypt_stream",
    "encrypt_file",
    "encrypt_stream",
    "open",
    "open_async",
    "run",
]
