"""AES keys: loading, generating and saving them without ever showing their bytes.

A :class:`Key` validates its length when it is made (16, 24 or 32 bytes select AES-128,
-192 or -256), keeps the bytes in a private ``bytearray`` that :meth:`Key.wipe` overwrites
(best effort: immutable ``bytes`` copies, such as the file read and what
:meth:`Key.material` hands to a cipher, are only freed, never overwritten), and has a repr,
str and pickle behaviour that cannot leak them. Error messages name the key file and the
size found, never the content.

A key can instead live in the kernel keyring (:meth:`Key.from_keyring`): then the object
holds only the key's serial number, type and size, and the kernel backend hands the serial
to AF_ALG. :meth:`Key.material` is the one way to key bytes for both kinds, so the rule that
a ``logon`` key is never read is enforced in one place
(:func:`kstream.keys.keyring.read_key_payload`).
"""

from __future__ import annotations

import contextlib
import os
import stat
from typing import TYPE_CHECKING, NoReturn

from kstream.errors import InvalidKey, UsageError, io_errors
from kstream.format import CipherSuite

if TYPE_CHECKING:
    from kstream.keys.keyring import KeyringRef

# kstream.keys.keyring (ctypes and its records) is imported only by the methods for keys kept in
# the kernel keyring: a run with a key file or a passphrase does not pay for it.

KEY_SIZES = (16, 24, 32)
_MAX_KEY_FILE = 4096  # a key file is tiny; refuse to slurp a large file by mistake
_HEX = frozenset("0123456789abcdefABCDEF")  # string.hexdigits, without importing string
_WHITESPACE = frozenset(b" \t\n\r\x0b\x0c")  # string.whitespace


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
        decoded = bytearray.fromhex(compact.decode("ascii"))
        if len(decoded) in KEY_SIZES:
            return decoded
    _check_size(len(content), where)
    return bytearray(content)


def readable_by_others(path: str | os.PathLike[str], what: str = "key file") -> str | None:
    """One line warning that the secret file ``path`` can be read by its group or by others
    (as ssh and gpg warn), or ``None`` when it cannot, or is not a regular file (a pipe,
    ``/dev/stdin``), or cannot be examined.

    Only a warning, never a refusal: the file is the user's. ``what`` names the file in
    the message (``"key file"``, ``"passphrase file"``).
    """
    return _loose(path, what, "readable", "anyone who can read it can decrypt with it")


def writable_by_others(directory: str | os.PathLike[str], what: str, why: str) -> str | None:
    """One line warning that ``directory`` (one that holds secrets) can be written by its
    group or by others, who can then remove or replace what is in it (``why`` says what
    that costs), or ``None``. Only a warning, as for :func:`readable_by_others`."""
    return _loose(directory, what, "writable", why)


#: For each permission a warning names: the group's and others' bits, the kind of file it
#: is about, and the mode that fixes it.
_PERMISSIONS = {
    "readable": (stat.S_IRGRP, stat.S_IROTH, stat.S_ISREG, "600"),
    "writable": (stat.S_IWGRP, stat.S_IWOTH, stat.S_ISDIR, "700"),
}


def _loose(path: str | os.PathLike[str], what: str, permission: str, why: str) -> str | None:
    """The warning that ``path`` grants its group or others ``permission``, or ``None``
    (also when it is not of the kind the permission is about, or cannot be examined)."""
    group_bit, other_bit, is_kind, fix = _PERMISSIONS[permission]
    try:
        st = os.stat(path)
    except OSError:
        return None
    who = " and ".join(
        name for bit, name in ((group_bit, "its group"), (other_bit, "others")) if st.st_mode & bit
    )
    if not is_kind(st.st_mode) or not who:
        return None
    return (
        f"{what} '{os.fspath(path)}' is {permission} by {who} (mode "
        f"{stat.S_IMODE(st.st_mode):04o}); {why}: chmod {fix} '{os.fspath(path)}'"
    )


class Key:
    """An AES key. Create with :meth:`from_file`, :meth:`from_fd`, :meth:`generate`, or
    refer to one in the kernel keyring with :meth:`from_keyring`."""

    __slots__ = ("_material", "_ref")

    def __init__(self, material: bytes | bytearray | memoryview) -> None:
        _check_size(len(material), "the key")
        self._material = bytearray(material)
        self._ref: KeyringRef | None = None

    @classmethod
    def generate(cls, bits: int = 256) -> Key:
        """A fresh random key of ``bits`` (128, 192 or 256) from the OS CSPRNG."""
        if bits not in (128, 192, 256):
            raise UsageError(f"key size must be 128, 192 or 256 bits, not {bits}")
        key = cls.__new__(cls)
        # getrandom(2) through os.urandom: blocks until the kernel's RNG is seeded (unlike a
        # read of /dev/urandom early at boot) and needs no device node (chroots). The
        # immutable bytes object is dropped at once; wiping is best effort in Python.
        key._material = bytearray(os.urandom(bits // 8))
        key._ref = None
        return key

    @classmethod
    def from_keyring(cls, name: str | None = None, *, serial: int | None = None) -> Key:
        """A key in the kernel keyring: ``kstream:NAME`` (searched in the session, then the
        user keyring) or the key with ``serial``. Reads nothing but its type and size."""
        if (name is None) == (serial is None):
            raise UsageError("give either a key name or a key serial")
        from kstream.keys import keyring

        ref = keyring.find_key(name) if name is not None else keyring.key_by_serial(serial or 0)
        key = cls.__new__(cls)
        key._material = bytearray()
        key._ref = ref
        return key

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Key:
        """Load a key file: 16/24/32 raw bytes, or the same as hex text."""
        where = f"key file '{os.fspath(path)}'"
        with io_errors("read", where, error=InvalidKey), open(path, "rb") as f:
            content = f.read(_MAX_KEY_FILE + 1)
        return cls._from_content(content, where)

    @classmethod
    def from_fd(cls, fd: int) -> Key:
        """Read a key from an inherited file descriptor (e.g. ``--key-fd 3``) until EOF."""
        where = f"key fd {fd}"
        chunks: list[bytes] = []
        total = 0
        with io_errors("read", where, error=InvalidKey):
            while total <= _MAX_KEY_FILE:
                chunk = os.read(fd, _MAX_KEY_FILE + 1 - total)
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
        return cls._from_content(b"".join(chunks), where)

    @classmethod
    def _from_content(cls, content: bytes, where: str) -> Key:
        if len(content) > _MAX_KEY_FILE:
            raise InvalidKey(f"{where} is too large to be a key (expected 16, 24 or 32 bytes)")
        if not content:
            raise InvalidKey(f"{where} is empty; create a key with 'kstream keygen'")
        return cls(_decode(content, where))

    @property
    def keyring_ref(self) -> KeyringRef | None:
        """The keyring key this object refers to, or ``None`` for a key held in memory."""
        return self._ref

    def add_to_keyring(self, name: str, key_type: str = "logon", ring: str = "user") -> int:
        """Add these bytes to the kernel keyring as ``kstream:NAME``; returns the serial.

        The kernel copies the bytes straight from this object's buffer.
        """
        if self._ref is not None:
            raise UsageError(f"{self._ref.label} is already in the kernel keyring")
        from kstream.keys import keyring

        return keyring.add_key(key_type, keyring.description_for(name), self._material, ring)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the key as hex text to a new file created with mode 0600.

        Refuses to overwrite: a key file replaced by mistake makes every file encrypted
        with the old key unreadable.
        """
        self._refuse_keyring("saved to a file")
        name = f"key file '{os.fspath(path)}'"
        try:
            with io_errors("create", name, passthrough=(FileExistsError,), error=UsageError):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError as exc:
            raise UsageError(f"{name} already exists; refusing to overwrite a key") from exc
        try:
            with io_errors("write", name, error=UsageError), os.fdopen(fd, "wb") as f:
                f.write(self.hex_text())
                f.flush()
                os.fsync(f.fileno())
        except UsageError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            raise

    def _refuse_keyring(self, action: str) -> None:
        if self._ref is not None:
            raise UsageError(
                f"{self._ref.label} lives in the kernel keyring and cannot be {action}; "
                "use 'kstream key gen --save' when creating a key to keep a backup"
            )

    def hex_text(self) -> bytes:
        """The key as a line of hex text (the key file format ``save`` writes)."""
        self._refuse_keyring("exported")
        import binascii  # not for reading a key: a small file's run does without it

        return binascii.hexlify(self._material) + b"\n"

    @property
    def size(self) -> int:
        """Key length in bytes."""
        return self._ref.size if self._ref is not None else len(self._material)

    @property
    def bits(self) -> int:
        """Key length in bits (128, 192 or 256)."""
        return self.size * 8

    @property
    def suite(self) -> CipherSuite:
        """The header cipher suite this key selects."""
        return CipherSuite.for_key_size(self.size)

    def material(self) -> bytes:
        """The raw key bytes, for handing to a cipher backend. Do not log or store them.

        Every user of key bytes comes through here. For a keyring key this reads a ``user``
        key's payload from the kernel (only the API's explicit ``backend="openssl"`` asks
        for that) and refuses a ``logon`` key without any system call.
        """
        if self._ref is None:
            return bytes(self._material)
        from kstream.keys import keyring

        payload = keyring.read_key_payload(self._ref)
        try:
            return bytes(payload)
        finally:
            for i in range(len(payload)):
                payload[i] = 0

    def wipe(self) -> None:
        """Overwrite the key bytes held by this object (best effort in Python).

        A keyring key holds none; it stays in the keyring (remove it with
        ``kstream key rm``).
        """
        for i in range(len(self._material)):
            self._material[i] = 0

    def __repr__(self) -> str:
        if self._ref is not None:
            return f"<kstream.Key AES-{self.bits} in the kernel keyring: {self._ref.label}>"
        return f"<kstream.Key AES-{self.bits} (key material hidden)>"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("kstream.Key cannot be pickled (it would copy key material)")


__all__ = ["KEY_SIZES", "Key", "readable_by_others"]
