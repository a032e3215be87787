"""The Linux kernel keyring, through the raw ``add_key``/``keyctl`` system calls.

Why this exists: with a ``logon`` key in the kernel keyring, the AES key never enters any
process. kstream then holds only a serial number and hands it to AF_ALG
(``ALG_SET_KEY_BY_KEY_SERIAL``), which fetches the key inside the kernel. The calls go
through ``ctypes`` so that no ``keyutils`` package is needed, and keys stay interoperable
with ``keyctl`` (``keyctl padd logon kstream:x @u < raw.key`` works with ``--key-name x``).

kstream's keys are named ``kstream:NAME`` (a ``logon`` description needs a ``prefix:``).

The rule that a ``logon`` key's bytes are never asked for is enforced in one place:
:func:`read_key_payload` is the only function here that reads a key's payload, and it
refuses everything but ``user`` keys before making any system call. (Reading a *keyring*,
i.e. its list of member serials, is :func:`keyring_members`, which only ever reads the
special session/user keyrings.)

Facts this relies on (measured in User Mode Linux 6.1, 6.12 and 7.2):

* a process without a session keyring (PID 1's children, some services) gets the
  per-user session keyring ``_uid_ses.N`` installed by any lookup of ``@s`` that does not
  ask to create one; that keyring links the user keyring, so keys in ``@u`` are then
  *possessed*. A lookup that creates (``add_key`` to ``@s``) would instead start a new
  anonymous session keyring that dies with the process, so kstream resolves ``@s`` to a
  serial first and adds to that;
* a key's default permissions give its *possessor* search (needed by AF_ALG) but the
  owning *user* only view: a key in ``@u`` is usable by serial only from a process whose
  session keyring links ``@u`` (else EACCES);
* ``KEYCTL_READ`` on a ``logon`` key fails (EOPNOTSUPP when possessed, EACCES when not);
* the key's length is shown only in ``/proc/keys`` (``description: length``).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from kstream.errors import BackendUnavailable, InvalidKey, KstreamError, UsageError

#: Every kstream key's description starts with this.
PREFIX = "kstream:"
KeyType = Literal["logon", "user"]
KEY_TYPES: tuple[KeyType, ...] = ("logon", "user")

#: Special keyring ids (``KEY_SPEC_*``).
KEY_SPEC_PROCESS_KEYRING = -2
KEY_SPEC_SESSION_KEYRING = -3
KEY_SPEC_USER_KEYRING = -4
RINGS: dict[str, int] = {
    "session": KEY_SPEC_SESSION_KEYRING,
    "user": KEY_SPEC_USER_KEYRING,
    "process": KEY_SPEC_PROCESS_KEYRING,
}

#: ``keyctl`` operations used here (``linux/keyctl.h``).
KEYCTL_GET_KEYRING_ID = 0
KEYCTL_JOIN_SESSION_KEYRING = 1
KEYCTL_REVOKE = 3
KEYCTL_DESCRIBE = 6
KEYCTL_SEARCH = 10
KEYCTL_READ = 11
KEYCTL_SET_TIMEOUT = 15
KEYCTL_INVALIDATE = 21

#: ``(add_key, request_key, keyctl)`` by ``platform.machine()``. The asm-generic table
#: (arm64, riscv, loongarch) differs from x86-64's, so a wrong guess would call an
#: unrelated system call: machines not listed are refused instead.
SYSCALLS: dict[str, tuple[int, int, int]] = {
    "x86_64": (248, 249, 250),
    "amd64": (248, 249, 250),
    "aarch64": (217, 218, 219),
    "arm64": (217, 218, 219),
    "riscv64": (217, 218, 219),
    "loongarch64": (217, 218, 219),
    "i386": (286, 287, 288),
    "i686": (286, 287, 288),
    "armv7l": (309, 310, 311),
}

#: Names a user may give: ``kstream:NAME`` must be one /proc/keys line and one argument.
_NAME = re.compile(r"[A-Za-z0-9._@+=,:-]{1,200}")
_MAX_PAYLOAD = 4096
_PERM_LETTERS = "alswrv"  # setattr link search write read view, high bit to low (keyctl's)
#: Search results that mean "there is such a key, but it cannot be used": reported as such.
_DEAD_OR_DENIED = frozenset({errno.EKEYEXPIRED, errno.EKEYREVOKED, errno.EACCES})


def syscall_numbers(machine: str | None = None) -> tuple[int, int, int]:
    """``(add_key, request_key, keyctl)`` for this machine, or a clear refusal."""
    machine = machine or platform.machine()
    try:
        return SYSCALLS[machine.lower()]
    except KeyError:
        raise BackendUnavailable(
            f"kstream does not know the keyring system call numbers for machine '{machine}' "
            "(known: x86_64, aarch64, riscv64, loongarch64, i686, armv7l); use a key file"
        ) from None


_libc: ctypes.CDLL | None = None


def _raw_syscall(number: int, *args: object) -> int:
    """``syscall(2)`` through libc; returns the result, or ``-errno`` on failure.

    A separate function so that tests can simulate the kernel's answers.
    """
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    ctypes.set_errno(0)
    result = int(_libc.syscall(ctypes.c_long(number), *args))
    return -ctypes.get_errno() if result == -1 else result


def _call(index: int, *args: object) -> int:
    number = syscall_numbers()[index]
    result = _raw_syscall(number, *args)
    if result < 0:
        code = -result
        raise OSError(code, os.strerror(code))
    return result


def _long(value: int) -> ctypes.c_long:
    return ctypes.c_long(value)


def keyctl(operation: int, *args: int | bytes | ctypes.Array[ctypes.c_char] | None) -> int:
    """``keyctl(operation, ...)``; integers travel as C longs (the call is variadic)."""
    converted: list[object] = [_long(operation)]
    for arg in args:
        converted.append(_long(arg) if isinstance(arg, int) else arg)
    return _call(2, *converted)


# --------------------------------------------------------------------------- errors


def unavailable_reason(exc: OSError) -> str | None:
    """Why the keyring cannot be used at all here, or ``None`` for an ordinary error."""
    if exc.errno == errno.ENOSYS:
        return "this kernel has no keyring support (CONFIG_KEYS off); use a key file"
    if exc.errno == errno.EPERM:
        return (
            "the keyring system calls are not permitted here (a container's seccomp policy "
            "blocks them by default); use a key file"
        )
    return None


def keyring_error(exc: OSError, what: str) -> KstreamError:
    """One actionable line for an ``OSError`` from a keyring call about ``what``."""
    reason = unavailable_reason(exc)
    if reason is not None:
        return BackendUnavailable(reason)
    if exc.errno == errno.ENOKEY:
        return InvalidKey(f"{what} does not exist; see 'kstream key list'")
    if exc.errno == errno.EKEYEXPIRED:
        return InvalidKey(f"{what} has expired; add the key again ('kstream key add')")
    if exc.errno == errno.EKEYREVOKED:
        return InvalidKey(f"{what} has been revoked; add the key again ('kstream key add')")
    if exc.errno == errno.EACCES:
        return InvalidKey(
            f"no permission to use {what}; if it is in the user keyring, link that into your "
            "session keyring with 'keyctl link @u @s'"
        )
    if exc.errno == errno.EDQUOT:
        return InvalidKey(
            f"cannot store {what}: the keyring quota is exhausted (see /proc/key-users); "
            "remove unused keys"
        )
    return InvalidKey(f"keyring call for {what} failed: {exc.strerror or exc}")


# --------------------------------------------------------------------------- names


def description_for(name: str) -> str:
    """``kstream:NAME`` for a user's NAME (which may already carry the prefix)."""
    bare = name[len(PREFIX):] if name.startswith(PREFIX) else name
    if not _NAME.fullmatch(bare):
        raise UsageError(
            f"invalid key name '{name}': use 1-200 letters, digits or . _ @ + = , : -"
        )
    return PREFIX + bare


def name_of(description: str) -> str:
    """NAME from ``kstream:NAME`` (other descriptions unchanged)."""
    return description[len(PREFIX):] if description.startswith(PREFIX) else description


# --------------------------------------------------------------------------- /proc/keys


@dataclass(frozen=True)
class ProcKey:
    """One line of ``/proc/keys`` (only keys this process may view are listed)."""

    serial: int
    flags: str
    expiry: str
    perm: int
    uid: int
    gid: int
    type: str
    description: str
    size: int | None


def parse_proc_keys(text: str) -> list[ProcKey]:
    """Parse ``/proc/keys``: ``serial flags usage expiry perm uid gid type description``.

    For ``user`` and ``logon`` keys the description is followed by ``: <payload length>``
    (for a keyring, the same place holds its number of links: not a size).
    """
    keys: list[ProcKey] = []
    for line in text.splitlines():
        fields = line.split(None, 8)
        if len(fields) < 9:
            continue
        serial, flags, _usage, expiry, perm, uid, gid, key_type, rest = fields
        size: int | None = None
        description = rest
        head, sep, tail = rest.rpartition(": ")
        if sep and tail.strip().isdigit():
            description = head
            size = int(tail) if key_type in KEY_TYPES else None
        try:
            keys.append(ProcKey(int(serial, 16), flags, expiry, int(perm, 16), int(uid),
                                int(gid), key_type, description, size))
        except ValueError:
            continue
    return keys


def read_proc_keys(path: str = "/proc/keys") -> list[ProcKey] | None:
    """``/proc/keys`` parsed, or ``None`` where the kernel has no such file."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse_proc_keys(f.read())
    except OSError:
        return None


def format_perm(perm: int) -> str:
    """``3d010000`` -> ``possessor alsw-v, user -----v`` (keyctl's letters; group/other
    only when set)."""
    parts = []
    for shift, who in ((24, "possessor"), (16, "user"), (8, "group"), (0, "other")):
        bits = (perm >> shift) & 0x3F
        if bits or who in ("possessor", "user"):
            letters = "".join(c if bits & (1 << (5 - i)) else "-"
                              for i, c in enumerate(_PERM_LETTERS))
            parts.append(f"{who} {letters}")
    return ", ".join(parts)


# --------------------------------------------------------------------------- keys


@dataclass(frozen=True)
class KeyringRef:
    """A key in the kernel keyring, by serial. Holds no key bytes.

    ``keyring`` is where a search by name found it (``session`` or ``user``), ``None``
    when the user gave the serial.
    """

    serial: int
    type: str
    description: str
    size: int
    keyring: str | None = None

    @property
    def label(self) -> str:
        return f"{self.type} key '{self.description}' (serial {self.serial})"


def resolve_keyring(ring: str) -> int:
    """The serial of ``session``/``user``/``process`` without creating an anonymous one.

    For a process without a session keyring this installs (and returns) the per-user
    session keyring, which persists and links the user keyring, rather than a new
    anonymous session keyring that would die when kstream exits.
    """
    spec = RINGS[ring]
    try:
        return keyctl(KEYCTL_GET_KEYRING_ID, spec, 1 if ring == "process" else 0)
    except OSError as exc:
        raise keyring_error(exc, f"the {ring} keyring") from exc


def describe(serial: int) -> tuple[str, int, int, int, str]:
    """``(type, uid, gid, perm, description)`` of a key (needs view permission)."""
    buf = ctypes.create_string_buffer(512)
    size = keyctl(KEYCTL_DESCRIBE, serial, buf, len(buf))
    text = buf.raw[:max(0, min(size, len(buf)) - 1)].decode("utf-8", "replace")
    key_type, uid, gid, perm, description = text.split(";", 4)
    return key_type, int(uid), int(gid), int(perm, 16), description


def search(ring: str, key_type: str, description: str) -> int:
    """``KEYCTL_SEARCH`` in ``ring`` (recursively, like the kernel does): the serial."""
    return keyctl(KEYCTL_SEARCH, RINGS[ring], key_type.encode(), description.encode(), 0)


def _key_size(serial: int) -> int | None:
    for key in read_proc_keys() or ():
        if key.serial == serial:
            return key.size
    return None


def _checked_ref(serial: int, key_type: str, description: str, keyring: str | None) -> KeyringRef:
    label = f"{key_type} key '{description}' (serial {serial})"
    if key_type not in KEY_TYPES:
        what = "a keyring" if key_type == "keyring" else f"a '{key_type}' key"
        raise InvalidKey(
            f"serial {serial} is {what}, not a logon or user key; kstream uses only those"
        )
    size = _key_size(serial)
    if size is None:
        raise InvalidKey(
            f"cannot tell the size of {label}: it is not listed in /proc/keys (kernel built "
            "without CONFIG_PROC_KEYS?); use a key file"
        )
    if size not in (16, 24, 32):
        raise InvalidKey(
            f"{label} holds {size} bytes; an AES key must be 16, 24 or 32 bytes"
        )
    return KeyringRef(serial, key_type, description, size, keyring)


def find_key(name: str) -> KeyringRef:
    """Look ``kstream:NAME`` up in the session keyring, then in the user keyring.

    A ``logon`` key wins over a ``user`` key of the same name (it is the safer kind).
    Expired or revoked keys are reported as such, not as missing.
    """
    description = description_for(name)
    dead: OSError | None = None
    for ring in ("session", "user"):
        for key_type in KEY_TYPES:
            try:
                serial = search(ring, key_type, description)
            except OSError as exc:
                if unavailable_reason(exc) is not None:
                    raise keyring_error(exc, f"key '{description}'") from exc
                if exc.errno in _DEAD_OR_DENIED and dead is None:
                    dead = exc
                continue
            return _checked_ref(serial, key_type, description, ring)
    if dead is not None:
        raise keyring_error(dead, f"key '{description}'")
    raise InvalidKey(
        f"no key '{description}' in the session or user keyring; create one with "
        f"'kstream key gen {name_of(description)}' or 'kstream key add {name_of(description)} "
        "KEYFILE' (see 'kstream key list')"
    )


def key_by_serial(serial: int) -> KeyringRef:
    """The key with this serial (``--key-serial``), checked to be a usable AES key."""
    if serial <= 0:
        raise UsageError(f"--key-serial must be a positive key serial number, not {serial}")
    try:
        key_type, _uid, _gid, _perm, description = describe(serial)
    except OSError as exc:
        if exc.errno == errno.ENOKEY:
            raise InvalidKey(
                f"no key with serial {serial}; see 'kstream key list'"
            ) from exc
        raise keyring_error(exc, f"key serial {serial}") from exc
    return _checked_ref(serial, key_type, description, None)


def ensure_absent(description: str, ring: str) -> int:
    """Refuse if ``description`` is already reachable from ``ring``; the ring's serial.

    ``add_key`` would silently replace an existing key of the same type and name, and every
    file encrypted with the old key would become unreadable.
    """
    ring_id = resolve_keyring(ring)
    for existing_type in KEY_TYPES:
        try:
            serial = keyctl(KEYCTL_SEARCH, ring_id, existing_type.encode(),
                            description.encode(), 0)
        except OSError:
            continue
        raise UsageError(
            f"{existing_type} key '{description}' already exists (serial {serial}); remove "
            f"it first with 'kstream key rm {name_of(description)}' (files encrypted with it "
            "need it to decrypt)"
        )
    return ring_id


def add_key(key_type: str, description: str,
            payload: bytearray | memoryview, ring: str) -> int:
    """Add a key from the caller's buffer (which the caller then wipes); its serial.

    ``payload`` is handed to the kernel in place, so no immutable copy of the key bytes is
    made here. Refuses to replace an existing key of the same name (``add_key`` would
    silently update it, making files encrypted with the old key unreadable).
    """
    if key_type not in KEY_TYPES:
        raise UsageError(f"key type must be logon or user, not '{key_type}'")
    ring_id = ensure_absent(description, ring)
    view = memoryview(payload).cast("B")
    try:
        buf = (ctypes.c_char * len(view)).from_buffer(view)
    except TypeError:  # a read-only buffer
        raise UsageError("add_key needs a writable buffer that the caller can wipe") from None
    try:
        return _call(0, key_type.encode(), description.encode(), buf,
                     ctypes.c_size_t(len(view)), _long(ring_id))
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            raise InvalidKey(
                f"the kernel refused {key_type} key '{description}' ({len(view)} bytes)"
            ) from exc
        raise keyring_error(exc, f"{key_type} key '{description}'") from exc
    finally:
        del buf
        view.release()


def read_key_payload(ref: KeyringRef) -> bytearray:
    """The bytes of a ``user`` key, into a buffer the caller wipes.

    The only function in kstream that reads a key's payload from the kernel. It refuses
    every type but ``user`` *before* any system call, so a ``logon`` key is never asked for.
    """
    if ref.type != "user":
        raise InvalidKey(
            f"{ref.label} cannot be read by any process (that is the point of a {ref.type} "
            "key); only the kernel crypto API can use it: use --backend kernel (Linux ≥ 6.2)"
        )
    buf = bytearray(_MAX_PAYLOAD)
    cbuf = (ctypes.c_char * len(buf)).from_buffer(buf)
    try:
        size = keyctl(KEYCTL_READ, ref.serial, cbuf, len(buf))
    except OSError as exc:
        raise keyring_error(exc, ref.label) from exc
    finally:
        del cbuf
    if size != ref.size:
        for i in range(len(buf)):
            buf[i] = 0
        raise InvalidKey(f"{ref.label} changed size while it was being read; try again")
    out = bytearray(buf[:size])
    for i in range(len(buf)):
        buf[i] = 0
    return out


def keyring_members(ring: str) -> list[int]:
    """Serials linked directly in the ``session`` or ``user`` keyring (reads the keyring's
    list of members, never a key's payload)."""
    ring_id = resolve_keyring(ring)
    buf = ctypes.create_string_buffer(4 * 4096)
    try:
        size = keyctl(KEYCTL_READ, ring_id, buf, len(buf))
    except OSError as exc:
        raise keyring_error(exc, f"the {ring} keyring") from exc
    count = min(size, len(buf)) // 4
    return list(struct.unpack(f"{count}i", buf.raw[:count * 4]))


def invalidate(ref: KeyringRef) -> None:
    """Invalidate a key: it disappears from every keyring at once (``keyctl invalidate``)."""
    try:
        keyctl(KEYCTL_INVALIDATE, ref.serial)
    except OSError as exc:
        raise keyring_error(exc, ref.label) from exc


@dataclass(frozen=True)
class ListedKey:
    """A kstream key as ``kstream key list`` shows it."""

    serial: int
    name: str
    type: str
    keyrings: tuple[str, ...]
    perm: int
    uid: int
    bits: int | None
    expiry: str

    def to_json(self) -> dict[str, object]:
        return {
            "serial": self.serial, "name": self.name, "description": PREFIX + self.name,
            "type": self.type, "keyrings": list(self.keyrings), "perm": f"{self.perm:08x}",
            "permissions": format_perm(self.perm), "uid": self.uid, "bits": self.bits,
            "expiry": self.expiry,
        }


def list_keys(proc_keys: Callable[[], list[ProcKey] | None] = read_proc_keys) -> list[ListedKey]:
    """kstream's keys visible to this process, with the keyrings that link them directly."""
    keys = proc_keys()
    if keys is None:
        raise BackendUnavailable(
            "cannot list keys: /proc/keys is not available (kernel built without "
            "CONFIG_PROC_KEYS)"
        )
    members: dict[str, set[int]] = {}
    for ring in ("session", "user"):
        try:
            members[ring] = set(keyring_members(ring))
        except KstreamError:
            members[ring] = set()
    listed = []
    for key in keys:
        if key.type not in KEY_TYPES or not key.description.startswith(PREFIX):
            continue
        rings = tuple(ring for ring, serials in members.items() if key.serial in serials)
        listed.append(ListedKey(
            serial=key.serial, name=name_of(key.description), type=key.type,
            keyrings=rings or ("other",), perm=key.perm, uid=key.uid,
            bits=key.size * 8 if key.size else None, expiry=key.expiry))
    return sorted(listed, key=lambda k: (k.name, k.serial))


__all__ = [
    "KEY_TYPES",
    "PREFIX",
    "RINGS",
    "SYSCALLS",
    "KeyringRef",
    "ListedKey",
    "ProcKey",
    "add_key",
    "describe",
    "description_for",
    "ensure_absent",
    "find_key",
    "format_perm",
    "invalidate",
    "key_by_serial",
    "keyctl",
    "keyring_error",
    "keyring_members",
    "list_keys",
    "name_of",
    "parse_proc_keys",
    "read_key_payload",
    "read_proc_keys",
    "resolve_keyring",
    "search",
    "syscall_numbers",
]
