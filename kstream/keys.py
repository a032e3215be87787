"""AES keys: loading, generating and saving them without ever showing their bytes.

A :class:`Key` validates its length when it is made (16, 24 or 32 bytes select AES-128,
-192 or -256), keeps the bytes in a private ``bytearray`` that :meth:`Key.wipe` overwrites,
and has a repr, str and pickle behaviour that cannot leak them. Error messages name the key
file and the size found, never the content.
"""

from __future__ import annotations

import binascii
import os
import string
from pathlib import Path
from typing import NoReturn

from kstream.errors import InvalidKey, UsageError
from kstream.format import CipherSuite

KEY_SIZES = (16, 24, 32)
_MAX_KEY_FILE = 4096  # a key file is tiny; refuse to slurp a large file by mistake
_HEX = frozenset(string.hexdigits)
_WHITESPACE = frozenset(string.whitespace.encode())


def _check_size(size: int, where: str) -> None:
    if size not in KEY_SIZES:
        raise InvalidKey(
            f"{where} holds {size} bytes; an AES key must be 16, 24 or 32 bytes "
            "(raw or as hex text); create one with 'kstream keygen'"
        )


def _decode(content: bytes, where: str) -> bytearray:
    """Raw bytes, or hex text (whitespace ignored) when the whole content is hex digits.

    Hex wins when both readings are possible; a random raw key is all hex digits with
    probability (22/256)^16 or less, so this never misreads a real raw key.
    """
    compact = bytes(b for b in content if b not in _WHITESPACE)
    if compact and all(chr(b) in _HEX for b in compact) and len(compact) % 2 == 0:
        decoded = bytearray(binascii.unhexlify(compact))
        if len(decoded) in KEY_SIZES:
            return decoded
    _check_size(len(content), where)
    return bytearray(content)


class Key:
    """An AES key. Create with :meth:`from_file`, :meth:`from_fd`, :meth:`generate`."""

    __slots__ = ("_material",)

    def __init__(self, material: bytes | bytearray | memoryview) -> None:
        _check_size(len(material), "the key")
        self._material = bytearray(material)

    @classmethod
    def generate(cls, bits: int = 128) -> Key:
        """A fresh random key of ``bits`` (128, 192 or 256) from the OS CSPRNG."""
        if bits not in (128, 192, 256):
            raise UsageError(f"key size must be 128, 192 or 256 bits, not {bits}")
        return cls(os.urandom(bits // 8))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Key:
        """Load a key file: 16/24/32 raw bytes, or the same as hex text."""
        where = f"key file '{os.fspath(path)}'"
        try:
            with open(path, "rb") as f:
                content = f.read(_MAX_KEY_FILE + 1)
        except OSError as exc:
            raise InvalidKey(f"cannot read {where}: {exc.strerror or exc}") from None
        return cls._from_content(content, where)

    @classmethod
    def from_fd(cls, fd: int) -> Key:
        """Read a key from an inherited file descriptor (e.g. ``--key-fd 3``) until EOF."""
        where = f"key fd {fd}"
        chunks: list[bytes] = []
        total = 0
        try:
            while total <= _MAX_KEY_FILE:
                chunk = os.read(fd, _MAX_KEY_FILE + 1 - total)
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
        except OSError as exc:
            raise InvalidKey(f"cannot read {where}: {exc.strerror or exc}") from None
        return cls._from_content(b"".join(chunks), where)

    @classmethod
    def _from_content(cls, content: bytes, where: str) -> Key:
        if len(content) > _MAX_KEY_FILE:
            raise InvalidKey(f"{where} is too large to be a key (expected 16, 24 or 32 bytes)")
        if not content:
            raise InvalidKey(f"{where} is empty; create a key with 'kstream keygen'")
        return cls(_decode(content, where))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the key as hex text to a new file created with mode 0600.

        Refuses to overwrite: a key file replaced by mistake makes every file encrypted
        with the old key unreadable.
        """
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            raise UsageError(
                f"key file '{os.fspath(path)}' already exists; refusing to overwrite a key"
            ) from None
        except OSError as exc:
            raise UsageError(
                f"cannot create key file '{os.fspath(path)}': {exc.strerror or exc}"
            ) from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(self.hex_text())
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            Path(path).unlink(missing_ok=True)
            raise UsageError(
                f"cannot write key file '{os.fspath(path)}': {exc.strerror or exc}"
            ) from None

    def hex_text(self) -> bytes:
        """The key as a line of hex text (the key file format ``save`` writes)."""
        return binascii.hexlify(self._material) + b"\n"

    @property
    def size(self) -> int:
        """Key length in bytes."""
        return len(self._material)

    @property
    def bits(self) -> int:
        """Key length in bits (128, 192 or 256)."""
        return len(self._material) * 8

    @property
    def suite(self) -> CipherSuite:
        """The header cipher suite this key selects."""
        return CipherSuite.for_key_size(len(self._material))

    def material(self) -> bytes:
        """The raw key bytes, for handing to a cipher backend. Do not log or store them."""
        return bytes(self._material)

    def wipe(self) -> None:
        """Overwrite the key bytes held by this object (best effort in Python)."""
        for i in range(len(self._material)):
            self._material[i] = 0

    def __repr__(self) -> str:
        return f"<kstream.Key AES-{self.bits} (key material hidden)>"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("kstream.Key cannot be pickled (it would copy key material)")


__all__ = ["KEY_SIZES", "Key"]
