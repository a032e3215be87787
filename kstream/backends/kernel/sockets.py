"""The AF_ALG socket edge: opening and binding sockets, keying them, and the one place where
their ``OSError`` becomes a kstream error.

Every kernel refusal is turned into one actionable line here (a missing module, an
``af_alg_restrict`` policy, a key of the wrong size, a kernel too old for keyring keys), and
the ``OSError`` stays attached as the cause so that ``--debug`` still shows the errno.
"""

from __future__ import annotations

import _socket
import errno
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeAlias

from kstream.backends.base import BLOCK, CHUNK
from kstream.backends.kernel.drivers import CTR_AES, available_ctr_aes_drivers
from kstream.errors import BackendUnavailable, InvalidKey, KstreamError, UsageError, option

if TYPE_CHECKING:  # kstream.keys.keyring (ctypes) only where a keyring key is used
    import socket

    from kstream.keys.keyring import KeyringRef

AF_ALG_RESTRICT = "/proc/sys/crypto/af_alg_restrict"

#: The kernel's page size: AF_ALG accounts its send buffer in whole pages.
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def af_alg_restrict() -> int | None:
    """The ``crypto.af_alg_restrict`` sysctl (Linux 7.3+), or ``None`` where it does not exist.

    0 allows every algorithm, 1 (the default) only an allowlist (bind fails with ENOENT for
    the rest), 2 disables AF_ALG (socket fails with EAFNOSUPPORT).
    """
    try:
        with open(AF_ALG_RESTRICT, encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def no_af_alg_reason() -> str:
    """Why ``socket(AF_ALG)`` failed with EAFNOSUPPORT, as precisely as this host allows."""
    restrict = af_alg_restrict()
    if restrict is None:
        return (
            "this kernel has no AF_ALG sockets (CONFIG_CRYPTO_USER_API_SKCIPHER off or the "
            "af_alg module not loadable, or af_alg_restrict=2)"
        )
    if restrict >= 2:
        return (
            f"this kernel has no AF_ALG sockets (sysctl crypto.af_alg_restrict={restrict} "
            "disables them; set it to 1 or 0 to allow)"
        )
    return (
        "this kernel has no AF_ALG sockets (CONFIG_CRYPTO_USER_API_SKCIPHER off or the af_alg "
        f"module not loadable; crypto.af_alg_restrict={restrict})"
    )


#: Where the kernel says what this process may do. af_alg_restrict=1 treats a process with
#: CAP_NET_ADMIN (bit 12) or CAP_SYS_ADMIN (bit 21) as privileged.
_STATUS = "/proc/self/status"
_CAP_NET_ADMIN = 12
_CAP_SYS_ADMIN = 21


def _effective_caps(status: str) -> int | None:
    try:
        with open(status, encoding="ascii") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        return None
    return None


def has_net_admin(status: str = _STATUS) -> bool | None:
    """Whether this process holds CAP_NET_ADMIN in its effective set (None: unknown)."""
    caps = _effective_caps(status)
    return None if caps is None else bool(caps >> _CAP_NET_ADMIN & 1)


def af_alg_privileged(status: str = _STATUS) -> bool | None:
    """Whether ``af_alg_restrict=1`` lets this process bind what only privileged processes
    may (``ctr(aes)``, ``hmac(sha256)``): CAP_NET_ADMIN or CAP_SYS_ADMIN (None: unknown)."""
    caps = _effective_caps(status)
    if caps is None:
        return None
    return bool(caps >> _CAP_NET_ADMIN & 1 or caps >> _CAP_SYS_ADMIN & 1)


#: The two ways to the kernel path under ``af_alg_restrict=1``, said the same way everywhere.
WAYS_OUT = (
    "run as root or from a systemd unit with AmbientCapabilities=CAP_NET_ADMIN, or set "
    "sysctl crypto.af_alg_restrict=0"
)


def _restrict_hint() -> str:
    """At ``af_alg_restrict=1`` the allowlist lets only privileged processes bind
    ``ctr(aes)`` and ``hmac(sha256)``: name both ways to get access."""
    if af_alg_restrict() != 1:
        return ""
    if af_alg_privileged():
        return ", or not on af_alg_restrict=1's allowlist (set sysctl crypto.af_alg_restrict=0)"
    return f", or not allowed by af_alg_restrict=1 to a process without CAP_NET_ADMIN ({WAYS_OUT})"


def drivers_by_name_refused() -> bool:
    """Whether the kernel refuses to bind ``ctr(aes)`` drivers by their driver names.

    ``af_alg_restrict=1`` (Linux 7.3's default) allows algorithm names only: ``ctr(aes)``
    binds (the kernel's pick), ``ctr-aes-aesni-avx`` does not, not even for root. So
    ``--driver``, and the selftest and benchmark rows of drivers other than the pick, need
    ``af_alg_restrict=0``.
    """
    return af_alg_restrict() == 1


def bind_refused_reason(socket_type: str, name: str, driver: str | None) -> str:
    """Why binding ``name`` failed with ENOENT; ``driver`` is the user's ``--driver``."""
    if driver is not None:
        names = available_ctr_aes_drivers()
        if driver in names and drivers_by_name_refused():
            return (
                f"crypto.af_alg_restrict=1 refuses {CTR_AES} drivers by name, even to root: "
                f"leave out --driver to use the kernel's pick, or set sysctl "
                "crypto.af_alg_restrict=0"
            )
        listing = ", ".join(names) if names else "none listed in /proc/crypto"
        return (
            f"the kernel has no {CTR_AES} driver '{driver}' for AF_ALG{_restrict_hint()}; "
            f"available: {listing}"
        )
    if af_alg_restrict() == 1 and af_alg_privileged() is False:
        return (
            f"crypto.af_alg_restrict=1 lets only processes with CAP_NET_ADMIN bind "
            f"{socket_type} '{name}' ({WAYS_OUT})"
        )
    module = "algif_skcipher" if socket_type == "skcipher" else f"algif_{socket_type}"
    return (
        f"the kernel refused {socket_type} '{name}' for AF_ALG (module {module} or the "
        f"algorithm's module missing{_restrict_hint()})"
    )


def open_alg_socket() -> socket.socket:
    """A fresh AF_ALG socket, or :class:`BackendUnavailable` saying why there is none.

    The socket is made with ``_socket`` and only then wrapped by ``socket``: every ``auto``
    run probes the kernel, and on a host without AF_ALG (most containers) the probe then
    ends without importing ``socket``, whose enums cost more start-up time than a small
    file takes to encrypt.
    """
    try:
        fd = _socket.socket(_socket.AF_ALG, _socket.SOCK_SEQPACKET, 0).detach()
    except OSError as exc:
        if exc.errno == errno.EAFNOSUPPORT:
            raise BackendUnavailable(no_af_alg_reason()) from exc
        raise BackendUnavailable(f"cannot create an AF_ALG socket: {exc.strerror or exc}") from exc
    import socket

    return socket.socket(socket.AF_ALG, socket.SOCK_SEQPACKET, 0, fd)


def bind_tfm(socket_type: str, name: str, driver: str | None = None) -> socket.socket:
    """An AF_ALG socket of ``socket_type`` bound to algorithm or driver ``name``.

    ``driver`` is the user's ``--driver`` (so that a refusal lists the alternatives).
    Binding also makes the kernel instantiate a template such as ``ctr(aes)``, after which
    the instance is listed in ``/proc/crypto``.
    """
    sock = open_alg_socket()
    try:
        sock.bind((socket_type, name))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.ENOENT:
            raise BackendUnavailable(bind_refused_reason(socket_type, name, driver)) from exc
        raise BackendUnavailable(
            f"cannot bind AF_ALG {socket_type} '{name}': {exc.strerror or exc}"
        ) from exc
    except ValueError as exc:  # e.g. "AF_ALG name too long" (64 bytes at most)
        sock.close()
        raise UsageError(f"'{name}' is not a valid kernel crypto algorithm name") from exc
    return sock


#: ``ALG_SET_KEY_BY_KEY_SERIAL`` (linux/if_alg.h, Linux 6.2); Python 3.11 has no constant.
ALG_SET_KEY_BY_KEY_SERIAL = 7
#: Kernels before 6.2 answer option 7 with ENOPROTOOPT (measured: 6.1 does, 6.12 and 7.2
#: take the key). kstream only passes logon/user keys, the types every such kernel takes,
#: so this errno means the kernel, not the key.
NO_KEY_BY_SERIAL = (
    "this kernel cannot take keys from the keyring (needs Linux ≥ 6.2); use a key file"
)

#: A cipher key: raw bytes, or a key in the kernel keyring that AF_ALG fetches by serial.
KernelKey: TypeAlias = "bytes | KeyringRef"


def serial_key_error(err: int | None, ref: KeyringRef, what: str) -> KstreamError:
    """One actionable line for ``setsockopt(ALG_SET_KEY_BY_KEY_SERIAL)`` failing with ``err``."""
    if err == errno.ENOPROTOOPT:
        return BackendUnavailable(NO_KEY_BY_SERIAL)
    if err == errno.ENOKEY:
        return InvalidKey(f"{ref.label} no longer exists (removed, or its keyring was cleared)")
    if err == errno.EACCES:
        where = f" from the {ref.keyring} keyring" if ref.keyring else ""
        return InvalidKey(
            f"no permission to use {ref.label}{where}: this process does not possess it; "
            "link the user keyring into your session keyring with 'keyctl link @u @s', or add "
            "the key with --keyring session"
        )
    if err == errno.EKEYEXPIRED:
        return InvalidKey(f"{ref.label} has expired; add the key again ('kstream key add')")
    if err == errno.EKEYREVOKED:
        return InvalidKey(f"{ref.label} has been revoked; add the key again ('kstream key add')")
    if err == errno.EINVAL:
        return InvalidKey(
            f"the kernel's {what} refused {ref.label}: an AES key must be 16, 24 or 32 bytes"
        )
    return BackendUnavailable(
        f"the kernel's {what} could not take {ref.label}: {os.strerror(err or 0)}"
    )


def set_key_by_serial(tfm: socket.socket, ref: KeyringRef, what: str) -> None:
    """Key the bound ``tfm`` socket with a keyring key: the kernel fetches it by serial and
    the bytes never pass through this process."""
    try:
        tfm.setsockopt(_socket.SOL_ALG, ALG_SET_KEY_BY_KEY_SERIAL, struct.pack("i", ref.serial))
    except OSError as exc:
        raise serial_key_error(exc.errno, ref, what) from exc


def set_key(tfm: socket.socket, key_bytes: KernelKey, what: str) -> None:
    """Give the bound ``tfm`` socket its key (``ALG_SET_KEY``, or by keyring serial).

    The one place a key reaches the kernel.
    """
    if not isinstance(key_bytes, bytes | bytearray | memoryview):  # a KeyringRef
        set_key_by_serial(tfm, key_bytes, what)
        return
    try:
        tfm.setsockopt(_socket.SOL_ALG, _socket.ALG_SET_KEY, key_bytes)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            raise InvalidKey(
                f"the kernel's {what} refused a {len(key_bytes)}-byte key; an AES key must be "
                "16, 24 or 32 bytes"
            ) from exc
        raise BackendUnavailable(
            f"the kernel's {what} could not take the key: {exc.strerror or exc}"
        ) from exc


def send_limit(op: socket.socket) -> int:
    """The most one send may offer this op socket without ever waiting for buffer space.

    AF_ALG lets a send proceed while at least a page of ``SO_SNDBUF`` (rounded down to whole
    pages) is free, and a send that finds it full waits for a ``recv`` that the lockstep only
    makes after the send returns: a hang. With the default buffer (208 KiB) this is
    :data:`~kstream.backends.base.CHUNK`; a lowered ``net.core.wmem_default`` makes it smaller.
    Less than a block (the held-back tail) is always queued before a send, hence ``- BLOCK``.
    """
    try:
        sndbuf = op.getsockopt(_socket.SOL_SOCKET, _socket.SO_SNDBUF)
    except OSError:
        return CHUNK
    usable = max(sndbuf - sndbuf % _PAGE, _PAGE) - BLOCK
    return max(BLOCK, min(CHUNK, usable - usable % BLOCK))


def kernel_failure(action: str, exc: OSError) -> BackendUnavailable:
    """A socket that was working failed while ``action``: the error to raise ``from exc``.

    Past the bind and the key, a failure says nothing the user can fix in the kernel, so the
    message points at the backend that does not need it.
    """
    return BackendUnavailable(
        f"the kernel crypto socket failed while {action}: {exc.strerror or exc}; "
        f"retry with {option('openssl')}"
    )


def close_sockets(*socks: socket.socket | None) -> None:
    """Close every socket given, even when closing one of them fails."""
    try:
        if socks and socks[0] is not None:
            socks[0].close()
    finally:
        if len(socks) > 1:
            close_sockets(*socks[1:])


class SocketPair:
    """What a stream owns in the kernel: the bound transform socket and the operation socket
    accepted from it. Both are closed together, and a failure while starting closes them
    before it is reported."""

    _tfm: socket.socket | None
    _op: socket.socket | None

    def close(self) -> None:
        op, tfm = self._op, self._tfm
        self._op = self._tfm = None
        close_sockets(op, tfm)

    @contextmanager
    def _starting(self, action: str) -> Iterator[None]:
        """Close both sockets if starting fails; a kernel error becomes one clear message."""
        try:
            yield
        except OSError as exc:
            self.close()
            raise kernel_failure(action, exc) from exc
        except BaseException:
            self.close()
            raise


__all__ = [
    "AF_ALG_RESTRICT",
    "ALG_SET_KEY_BY_KEY_SERIAL",
    "NO_KEY_BY_SERIAL",
    "WAYS_OUT",
    "KernelKey",
    "SocketPair",
    "af_alg_privileged",
    "af_alg_restrict",
    "bind_refused_reason",
    "bind_tfm",
    "close_sockets",
    "drivers_by_name_refused",
    "has_net_admin",
    "kernel_failure",
    "no_af_alg_reason",
    "open_alg_socket",
    "send_limit",
    "serial_key_error",
    "set_key",
    "set_key_by_serial",
]
