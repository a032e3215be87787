"""What the kernel crypto API offers here, and why the kernel backend does or does not work.

This is the kernel half of ``kstream backends`` (:mod:`kstream.backends.report`): it asks the
kernel directly (an AF_ALG socket, a bind, a ``setsockopt``) rather than guessing from
configuration, because what matters is what a stream would meet: a missing module, an
``af_alg_restrict`` policy, a kernel too old for keyring keys, or only the slow generic C
AES. Every check uses throwaway sockets, and reports the raw errno rather than a kstream
error, because the errno is the diagnosis.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from typing import Any

from kstream.backends.kernel import procfs
from kstream.backends.kernel.drivers import CTR_AES, generic_warning
from kstream.backends.kernel.procfs import implementations, kernel_pick
from kstream.backends.kernel.sockets import (
    ALG_SET_KEY_BY_KEY_SERIAL,
    af_alg_privileged,
    af_alg_restrict,
    bind_refused_reason,
    no_af_alg_reason,
)

#: The algorithms kstream uses or will use: the cipher, and the MAC of authenticated formats.
ALGORITHMS = ((CTR_AES, "skcipher"), ("hmac(sha256)", "hash"))
#: Hashes whose key is a 16-byte field element that one block reveals: keyed by a keyring
#: serial, they turn a 16-byte key into readable output (ghash(H, 80 00..00) = H).
SHORT_KEY_LEAKS = ("ghash", "polyval")


def bind_errno(socket_type: str, name: str) -> int:
    """0 if an AF_ALG ``socket_type`` socket binds ``name``, else the errno that failed.

    Binding also instantiates templates (``ctr(aes)``), so that ``/proc/crypto`` then lists
    the implementation the kernel picks.
    """
    try:
        sock = socket.socket(socket.AF_ALG, socket.SOCK_SEQPACKET, 0)
    except OSError as exc:
        return exc.errno or errno.EAFNOSUPPORT
    with sock:
        try:
            sock.bind((socket_type, name))
        except OSError as exc:
            return exc.errno or errno.EINVAL
    return 0


def _name(code: int) -> str:
    return errno.errorcode.get(code, str(code))


def af_alg_socket_errno() -> int:
    """0 if this process can create an AF_ALG socket at all, else the errno (EAFNOSUPPORT:
    the kernel has no AF_ALG, or ``crypto.af_alg_restrict=2`` disables it)."""
    try:
        socket.socket(socket.AF_ALG, socket.SOCK_SEQPACKET, 0).close()
    except OSError as exc:
        return exc.errno or errno.EAFNOSUPPORT
    return 0


def unusable_reason(code: int, socket_type: str, restrict: int | None) -> str:
    """Why an algorithm whose bind failed with ``code`` cannot be used, in a few words that
    start with the errno (the full diagnosis is in the report's ``diagnosis`` lines)."""
    if code == errno.EAFNOSUPPORT:
        if restrict is not None and restrict >= 2:
            return f"EAFNOSUPPORT: crypto.af_alg_restrict={restrict} disables AF_ALG"
        return "EAFNOSUPPORT: no AF_ALG in this kernel"
    if code == errno.ENOENT:
        module = f"algif_{socket_type}"
        if restrict == 1 and af_alg_privileged() is False:
            return (
                "ENOENT: crypto.af_alg_restrict=1 allows it only to processes with "
                "CAP_NET_ADMIN, and this one has none"
            )
        if restrict == 1:
            return (
                "ENOENT: not allowed by crypto.af_alg_restrict=1 (allowlisted algorithms "
                f"only), or module {module} or the algorithm's module missing"
            )
        return f"ENOENT: module {module} or the algorithm's module missing"
    return f"bind failed with {_name(code)}"


def key_by_serial_support() -> dict[str, Any]:
    """Whether a key can be given to AF_ALG by its keyring serial here
    (``setsockopt(SOL_ALG, ALG_SET_KEY_BY_KEY_SERIAL)``, Linux 6.2).

    Asked directly, on a socket bound to an algorithm kstream uses: serial 0 is never a
    key, so a kernel that knows the option fails with ENOKEY or EINVAL, one that does not
    with ENOPROTOOPT. Without AF_ALG, or with no such algorithm allowed to bind, keys by
    serial cannot be used, whatever the kernel release: the answer is no, with the reason,
    not a guess from the version number.
    """
    code = af_alg_socket_errno()
    if code:
        return {
            "supported": False,
            "how": "no AF_ALG",
            "detail": f"socket(AF_ALG) failed with {_name(code)}",
        }
    refused = []
    for name, socket_type in ALGORITHMS:
        try:
            sock = socket.socket(socket.AF_ALG, socket.SOCK_SEQPACKET, 0)
        except OSError as exc:
            refused.append(f"{name} {_name(exc.errno or errno.EAFNOSUPPORT)}")
            continue
        with sock:
            try:
                sock.bind((socket_type, name))
            except OSError as exc:
                refused.append(f"{name} {_name(exc.errno or errno.EINVAL)}")
                continue
            try:
                sock.setsockopt(socket.SOL_ALG, ALG_SET_KEY_BY_KEY_SERIAL, struct.pack("i", 0))
            except OSError as exc:
                code = exc.errno or 0
                return {
                    "supported": code != errno.ENOPROTOOPT,
                    "how": "probe",
                    "detail": f"serial 0 gave {_name(code)}",
                }
            return {"supported": True, "how": "probe", "detail": "serial 0 was accepted"}
    return {
        "supported": False,
        "how": "bind refused",
        "detail": "no algorithm kstream uses can be bound (" + ", ".join(refused) + ")",
    }


def short_key_readability(serial: dict[str, Any] | None = None) -> dict[str, Any]:
    """Whether a 16-byte keyring key can be read back here: can a ``hash`` socket bind
    ``ghash`` or ``polyval``, on a kernel that takes keys by serial? (A bind that succeeds
    then means yes: such a socket takes any key by serial, and one block of output is the
    key, or its image under a field inversion.) ``serial`` is
    :func:`key_by_serial_support`'s answer, asked here if not given; where it is no, a
    keyring key never reaches an AF_ALG socket, and the answer is no whatever binds."""
    if serial is None:
        serial = key_by_serial_support()
    binds = {name: bind_errno("hash", name) for name in SHORT_KEY_LEAKS}
    found = [name for name, code in binds.items() if code == 0]
    return {
        "readable": bool(found) and serial["supported"] is not False,
        "via": found,
        "bind": {
            name: "ok" if code == 0 else errno.errorcode.get(code, str(code))
            for name, code in binds.items()
        },
    }


def algorithm_report(name: str, socket_type: str, restrict: int | None = None) -> dict[str, Any]:
    """Whether ``name`` can be used through AF_ALG here and, if it can, every implementation
    that ``/proc/crypto`` lists and the kernel's pick.

    An algorithm that does not bind has no pick and no drivers: ``/proc/crypto`` lists what
    the kernel uses for itself (its own hmac, say), which a process cannot reach when the
    socket family is missing or the bind is refused; those names are kept apart, under
    ``listed``, for the diagnosis.
    """
    code = bind_errno(socket_type, name)
    algs = procfs.read_proc_crypto()
    listed = implementations(algs, name, socket_type, include_unusable=True)
    pick = kernel_pick(algs, name, socket_type) if code == 0 else None
    drivers = [
        {
            "driver": alg.driver,
            "priority": alg.priority,
            "module": alg.module,
            "async": alg.is_async,
            "selftest": alg.selftest,
            "internal": alg.internal,
            "picked": pick is not None and alg.driver == pick.driver,
        }
        for alg in (listed if code == 0 else [])
    ]
    return {
        "name": name,
        "socket_type": socket_type,
        "bind": "ok" if code == 0 else _name(code),
        "usable": code == 0,
        "reason": None if code == 0 else unusable_reason(code, socket_type, restrict),
        "picked": pick.driver if pick is not None else None,
        "drivers": drivers,
        "listed": [alg.driver for alg in listed] if code else [],
    }


def _diagnosis(
    algorithms: list[dict[str, Any]],
    restrict: int | None,
    serial: dict[str, Any],
    short: dict[str, Any] | None = None,
) -> list[str]:
    lines: list[str] = []
    binds = {entry["name"]: entry for entry in algorithms}
    if any(entry["bind"] == "EAFNOSUPPORT" for entry in algorithms):
        return [no_af_alg_reason()]
    for entry in algorithms:
        if entry["bind"] == "ENOENT":
            lines.append(bind_refused_reason(entry["socket_type"], entry["name"], None))
        elif entry["bind"] != "ok":
            lines.append(
                f"binding {entry['socket_type']} '{entry['name']}' failed with {entry['bind']}"
            )
    if restrict is not None:
        meaning = {0: "every algorithm allowed", 1: "allowlisted algorithms only"}.get(
            restrict, "AF_ALG disabled"
        )
        lines.append(f"crypto.af_alg_restrict={restrict} ({meaning})")
    if serial["supported"] is False and serial["how"] == "probe":
        lines.append(
            "keys by keyring serial are not supported (ALG_SET_KEY_BY_KEY_SERIAL needs "
            f"Linux 6.2 or later; {serial['detail']})"
        )
    if short is not None and short["readable"]:
        lines.append(
            "a 16-byte (AES-128) keyring key is readable here: AF_ALG "
            f"{' and '.join(short['via'])} keyed by its serial returns it; keep keyring keys "
            "at 256 bits (the default of 'kstream key gen')"
        )
    ctr = binds.get(CTR_AES)
    if ctr is not None and ctr["picked"] is not None:
        warning = generic_warning(ctr["picked"])
        if warning is not None:
            lines.append(f"{CTR_AES}: {warning}")
    return lines


def process_report(algorithms: list[dict[str, Any]], restrict: int | None) -> dict[str, Any]:
    """What this process, with its own privileges, may use: under ``af_alg_restrict=1`` the
    answer differs between root and a user on one kernel, so the report says whose it is."""
    refused = [entry["name"] for entry in algorithms if not entry["usable"]]
    return {
        "uid": os.geteuid(),
        "privileged": af_alg_privileged(),
        "may_use_kernel": not refused,
        "refused": refused,
        "policy": restrict == 1 and af_alg_privileged() is False and bool(refused),
    }


def kernel_report() -> dict[str, Any]:
    """The kernel half of ``kstream backends``: release, policy, algorithms and diagnosis."""
    # The socket first: on Linux 7.3 the af_alg_restrict sysctl exists only once the af_alg
    # module is loaded, which creating the socket does.
    socket_code = af_alg_socket_errno()
    restrict = af_alg_restrict()
    algorithms = [algorithm_report(name, socket_type, restrict) for name, socket_type in ALGORITHMS]
    serial = key_by_serial_support()
    short = short_key_readability(serial)
    diagnosis = _diagnosis(algorithms, restrict, serial, short)
    return {
        "kernel": {
            "release": os.uname().release,
            "af_alg": {
                "available": socket_code == 0,
                "error": None if socket_code == 0 else _name(socket_code),
                "reason": None if socket_code == 0 else unusable_reason(socket_code, "", restrict),
            },
            "af_alg_restrict": restrict,
            "process": process_report(algorithms, restrict),
            "key_by_serial": serial,
            "short_keyring_key_readable": short,
        },
        "algorithms": algorithms,
        "diagnosis": diagnosis or ["no problems found"],
    }


__all__ = [
    "ALGORITHMS",
    "af_alg_socket_errno",
    "algorithm_report",
    "bind_errno",
    "kernel_report",
    "key_by_serial_support",
    "process_report",
    "short_key_readability",
    "unusable_reason",
]
