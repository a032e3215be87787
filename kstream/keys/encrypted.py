"""Durable keys: the kernel's ``encrypted`` key type, wrapped by a master key.

An ``encrypted`` key is generated inside the kernel (``new default MASTER 32``); user space
only ever sees its *blob*: the key encrypted and authenticated under a key derived from the
master (a ``user`` key, or a TPM-sealed ``trusted`` key). kstream writes the blob to a file
(mode 0600, never overwritten) when it makes the key, and after a reboot hands it back to
the kernel (``load BLOB``), which opens it only with the same master loaded. AF_ALG then
takes the key by serial like a ``logon`` key. kstream never reads the key itself: the one
``KEYCTL_READ`` here (:func:`export_blob`) returns the wrapped blob, once, to save it.

Facts this relies on (seen in User Mode Linux 7.2; docs/keys.md): ``add_key`` fails with
ENODEV without the ``encrypted`` type (module ``encrypted-keys``, which needs ``cbc``,
``ecb``, ``hmac`` and ``sha256``); ``new`` succeeds even when the master is missing, and
the blob's read then fails with ENOKEY, so the master is checked first; ``load`` with a
wrong master or a damaged blob fails with EINVAL.
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

from kstream.errors import BackendUnavailable, InvalidKey, UsageError
from kstream.keys import keyring
from kstream.keys.key import writable_by_others

#: The blob's format word and the key length kstream asks the kernel for (AES-256).
FORMAT = "default"
NO_ENCRYPTED_TYPE = (
    "this kernel has no 'encrypted' key type (CONFIG_ENCRYPTED_KEYS); load it with "
    "'modprobe encrypted-keys' (as root), or use a logon key"
)
TPM_CLASS = "/sys/class/tpm"
_MAX_BLOB = 16384


def blob_path(name: str, env: dict[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/kstream/keys/NAME.blob`` (``~/.local/share/...`` by default)."""
    env = dict(os.environ) if env is None else env
    bare = keyring.name_of(keyring.description_for(name))
    base = env.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "kstream" / "keys" / f"{bare}.blob"


def master_descriptor(master: str) -> str:
    """``user:DESC``/``trusted:DESC`` as given; any other MASTER is a kstream key name,
    the ``user`` key ``kstream:MASTER``."""
    if master.startswith(("user:", "trusted:")) and len(master.split(":", 1)[1]) > 0:
        return master
    return "user:" + keyring.description_for(master)


def _load_hint(master: str) -> str:
    key_type, description = master.split(":", 1)
    if key_type == "trusted":
        return f'keyctl add trusted {description} "load $(cat SEALED_BLOB)" @u'
    if description.startswith(keyring.PREFIX):
        return f"kstream key add {keyring.name_of(description)} FILE --type user"
    return f"keyctl padd user {description} @u < FILE"


def check_master(master: str) -> None:
    """Refuse with the reason (and how to load it) unless ``master`` is loaded here."""
    key_type, description = master.split(":", 1)
    for ring in ("session", "user"):
        try:
            keyring.search(ring, key_type, description)
            return
        except OSError as exc:
            if keyring.unavailable_reason(exc) is not None:
                raise keyring.keyring_error(exc, f"master key '{master}'") from exc
    if key_type == "trusted" and not any(Path(TPM_CLASS).glob("tpm*")):
        raise BackendUnavailable(
            f"master key '{master}' is a TPM-sealed trusted key, and this machine has no TPM "
            f"({TPM_CLASS} is empty); use a user master"
        )
    raise InvalidKey(
        f"master key '{master}' is not loaded; load it first with '{_load_hint(master)}'"
    )


def _add(description: str, command: str, ring: str, what: str) -> int:
    try:
        return keyring.add_key_command("encrypted", description, command.encode(), ring)
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            raise BackendUnavailable(NO_ENCRYPTED_TYPE) from exc
        if exc.errno == errno.EINVAL:
            raise InvalidKey(what) from exc
        raise keyring.keyring_error(exc, f"encrypted key '{description}'") from exc


def export_blob(serial: int) -> bytes:
    """The blob of the ``encrypted`` key ``serial``: the key wrapped by its master, what
    ``keyctl pipe`` prints. Used once, to save it; it is not the key."""
    buf = ctypes.create_string_buffer(_MAX_BLOB)
    try:
        size = keyring.keyctl(keyring.KEYCTL_READ, serial, buf, len(buf))
    except OSError as exc:
        raise keyring.keyring_error(exc, f"the blob of encrypted key {serial}") from exc
    return buf.raw[: min(size, len(buf))].rstrip(b"\0\n")


def make_private_dirs(directory: Path) -> None:
    """Create ``directory`` and each missing parent with mode 0700 (``mkdir(parents=True)``
    would make the parents with the umask's mode, 0755, listing what is in them)."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        path.mkdir(mode=0o700, exist_ok=True)


def loose_blob_directory(blob: Path) -> str | None:
    """The warning for a blob directory others can write to, or ``None``."""
    return writable_by_others(
        blob.parent,
        "blob directory",
        "anyone who can write there can remove or replace a key's blob",
    )


def _create_exclusive(path: Path) -> int:
    """An fd of a new file ``path`` (mode 0600, missing parents 0700); refuses an existing
    one."""
    if path.exists() or path.is_symlink():
        raise UsageError(
            f"blob file '{path}' already exists; refusing to overwrite it (it may be the only "
            "way back to a key): give another --blob PATH or remove it"
        )
    make_private_dirs(path.parent)
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise UsageError(f"blob file '{path}' already exists; refusing to overwrite it") from None


def generate(name: str, master: str, blob: Path, ring: str) -> int:
    """Have the kernel generate AES-256 ``encrypted`` key ``kstream:NAME`` wrapped by
    ``master``, write its blob to ``blob`` (new file, 0600); the serial. Nothing is left
    behind on failure: no key without its blob, no blob without its key."""
    description = keyring.description_for(name)
    master = master_descriptor(master)
    keyring.ensure_absent(description, ring)
    check_master(master)
    try:
        fd = _create_exclusive(blob)
    except OSError as exc:
        raise UsageError(f"cannot create blob file '{blob}': {exc.strerror}") from exc
    serial = None
    try:
        serial = _add(
            description,
            f"new {FORMAT} {master} {keyring.ENCRYPTED_KEY_BYTES}",
            ring,
            f"the kernel refused to make an encrypted key under '{master}'",
        )
        data = export_blob(serial)
        with os.fdopen(fd, "wb") as f:
            fd = -1
            f.write(data + b"\n")
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        if fd >= 0:
            os.close(fd)
        blob.unlink(missing_ok=True)
        if serial is not None:
            keyring.invalidate(keyring.KeyringRef(serial, "encrypted", description, 32))
        raise
    return serial


def read_blob(blob: Path) -> tuple[str, str]:
    """``(blob text, master)`` from a blob file, checked to be one kstream can load."""
    try:
        text = blob.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not a key blob"
        raise InvalidKey(f"cannot read blob file '{blob}': {why}") from exc
    fields = text.split()
    if (
        len(fields) != 4
        or fields[0] != FORMAT
        or not fields[1].startswith(("user:", "trusted:"))
        or fields[2] != str(keyring.ENCRYPTED_KEY_BYTES)
    ):
        raise InvalidKey(
            f"'{blob}' is not an encrypted key blob of a {keyring.ENCRYPTED_KEY_BYTES * 8}-bit "
            "key (as 'kstream key gen --durable' writes)"
        )
    return text, fields[1]


def master_in(blob: Path) -> str | None:
    """The master a blob file names, or ``None`` if there is no readable blob there."""
    try:
        return read_blob(blob)[1]
    except InvalidKey:
        return None


def load(name: str, blob: Path, ring: str) -> int:
    """Re-create ``kstream:NAME`` from its blob file (its master must be loaded); the serial."""
    description = keyring.description_for(name)
    text, master = read_blob(blob)
    keyring.ensure_absent(description, ring)
    check_master(master)
    return _add(
        description,
        f"load {text}",
        ring,
        f"blob '{blob}' does not open with master key '{master}': a different master "
        "key of that name, or a damaged blob",
    )


__all__ = [
    "NO_ENCRYPTED_TYPE",
    "blob_path",
    "check_master",
    "export_blob",
    "generate",
    "load",
    "master_descriptor",
    "master_in",
    "read_blob",
]
