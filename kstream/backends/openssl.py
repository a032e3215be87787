"""AES-CTR through OpenSSL, via the ``cryptography`` package.

Always available where kstream installs; it is the fallback when the kernel backend is not,
and the independent reference that ``--verify`` and the tests compare the kernel against.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from kstream.backends.base import Availability, CipherOptions
from kstream.errors import library_errors
from kstream.format import IV_SIZE

if TYPE_CHECKING:
    from kstream.keys.key import Key


def openssl_version_text() -> str:
    """The OpenSSL that ``cryptography`` runs on. Imported when asked: the backend module
    brings OpenSSL's whole binding (certificates, curves), which a small file's encryption
    has no use for."""
    from cryptography.hazmat.backends.openssl.backend import backend

    return str(backend.openssl_version_text())


class OpenSSLStream:
    """A CTR context; returns exactly as many bytes as it is given."""

    def __init__(self, key_bytes: bytes, iv: bytes) -> None:
        if len(iv) != IV_SIZE:
            raise ValueError(f"IV must be {IV_SIZE} bytes")
        self._ctx: CipherContext | None = Cipher(
            algorithms.AES(key_bytes), modes.CTR(iv)
        ).encryptor()

    @property
    def description(self) -> str:
        return f"openssl ({openssl_version_text()})"

    def _context(self) -> CipherContext:
        if self._ctx is None:
            raise ValueError("cipher stream is closed")
        return self._ctx

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        ctx = self._context()
        with library_errors("openssl"):
            return ctx.update(data)

    def update_into(self, data: bytes | bytearray | memoryview, out: bytearray | memoryview) -> int:
        """Encrypt ``data`` into ``out``, a buffer that does not overlap ``data``.

        ``out`` needs 15 bytes of room beyond ``len(data)`` (OpenSSL's rule for block
        ciphers; CTR never uses it). Saves the allocation ``update`` makes per call.
        """
        ctx = self._context()
        with library_errors("openssl"):
            return ctx.update_into(data, out)

    def finalize(self) -> bytes:
        ctx = self._context()
        with library_errors("openssl"):
            out = ctx.finalize()
        self._ctx = None
        return out

    def close(self) -> None:
        self._ctx = None


class OpenSSLBackend:
    """The ``openssl`` backend."""

    name = "openssl"

    def probe(self) -> Availability:
        return Availability(
            name=self.name,
            available=True,
            reason=f"{openssl_version_text()} via the cryptography package",
        )

    def open(self, key: Key, iv: bytes, options: CipherOptions | None = None) -> OpenSSLStream:
        return OpenSSLStream(key.material(), iv)
