"""kstream: streaming AES-CTR for files and pipes, through the Linux kernel crypto API
(AF_ALG) or OpenSSL.

The coroutine API::

    key = kstream.Key.from_file("secret.key")
    await kstream.encrypt_file("data.tar", "data.tar.kst", key=key)
    async for piece in kstream.decrypt_stream(chunks, key=key): ...

run from ``kstream.run(main())`` (uvloop when installed) or any asyncio event loop.
"""

from kstream.api import decrypt_file, decrypt_stream, encrypt_file, encrypt_stream
from kstream.backends import CipherOptions
from kstream.errors import (
    BackendUnavailable,
    FormatError,
    IntegrityError,
    Interrupted,
    InvalidKey,
    IOFailure,
    KstreamError,
    UsageError,
)
from kstream.format import CipherSuite, Header
from kstream.keys import Key
from kstream.loop import run

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailable",
    "CipherOptions",
    "CipherSuite",
    "FormatError",
    "Header",
    "IOFailure",
    "IntegrityError",
    "Interrupted",
    "InvalidKey",
    "Key",
    "KstreamError",
    "UsageError",
    "__version__",
    "decrypt_file",
    "decrypt_stream",
    "encrypt_file",
    "encrypt_stream",
    "run",
]
