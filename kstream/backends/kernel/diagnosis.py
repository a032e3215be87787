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
import re
import socket
import struct
from typing import Any

from kstream.backends.kernel import procfs
from kstream.backends.kernel.drivers import CTR_AES, generic_warning
from kstream.backends.kernel.procfs import implementations, kernel_pick
from kstream.backends.kernel.sockets import (
    ALG_SET_KEY_BY_KEY_SERIAL,
    af_alg_restrict,
    bind_refused_reason,
    no_af_alg_reason,
)

#: The algorithms kstream uses or will use: the cipher, and the MAC of authenticated formats.
ALGORITHMS = ((CTR_AES, "skcipher"), ("hmac(sha256)", "hash"))
KEY_BY_SERIAL_SINCE = (6, 2)
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


def _release_version(release: str) -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", release)
    return (int(match[1]), int(match[2])) if match else None


def key_by_serial_support() -> dict[str, Any]:
    """Whether ``setsockopt(SOL_ALG, ALG_SET_KEY_BY_KEY_SERIAL)`` exists in this kernel.

    Asked directly: serial 0 is never a key, so a kernel that knows the option fails with
    ENOKEY or EINVAL, one that does not with ENOPROTOOPT. Where no socket can be bound, the
    kernel release (6.2 or later) is the fallback answer.
    """
    try:
        sock = socket.socket(socket.AF_ALG, socket.SOCK_SEQPACKET, 0)
        with sock:
            sock.bind(("skcipher", CTR_AES))
            try:
                sock.setsockopt(socket.SOL_ALG, ALG_SET_KEY_BY_KEY_SERIAL, struct.pack("i", 0))
            except OSError as exc:
                code = errno.errorcode.get(exc.errno or 0, str(exc.errno))
                supported = exc.errno != errno.ENOPROTOOPT
                return {"supported": supported, "how": "probe", "detail": f"serial 0 gave {code}"}
            return {"supported": True, "how": "probe", "detail": "serial 0 was accepted"}
    except OSError:
        pass
    release = os.uname().release
    version = _release_version(release)
    if version is None:
        return {"supported": None, "how": "kernel release", "detail": f"unknown ({release})"}
    return {
        "supported": version >= KEY_BY_SERIAL_SINCE,
        "how": "kernel release",
        "detail": f"Linux {release}; the option exists since 6.2",
    }


def short_key_readability() -> dict[str, Any]:
    """Whether a 16-byte keyring key can be read back here: can a ``hash`` socket bind
    ``ghash`` or ``polyval``? (A bind that succeeds means yes: such a socket takes any key by
    serial, and one block of output is the key, or its image under a field inversion.)"""
    binds = {name: bind_errno("hash", name) for name in SHORT_KEY_LEAKS}
    found = [name for name, code in binds.items() if code == 0]
    return {
        "readable": bool(found),
        "via": found,
        "bind": {name: "ok" if code == 0 else errno.errorcode.get(code, str(code))
                 for name, code in binds.items()},
    }


def algorithm_report(name: str, socket_type: str) -> dict[str, Any]:
    """Every implementation of ``name`` that ``/proc/crypto`` lists, and the kernel's pick."""
    code = bind_errno(socket_type, name)
    algs = procfs.read_proc_crypto()
    pick = kernel_pick(algs, name, socket_type)
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
        for alg in implementations(algs, name, socket_type, include_unusable=True)
    ]
    return {
        "name": name,
        "socket_type": socket_type,
        "bind": "ok" if code == 0 else errno.errorcode.get(code, str(code)),
        "picked": pick.driver if pick is not None else None,
        "drivers": drivers,
    }


def _diagnosis(
    algorithms: list[dict[str, Any]], restrict: int | None, serial: dict[str, Any],
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
    if serial["supported"] is False:
        lines.append(
            "keys by keyring serial are not supported (ALG_SET_KEY_BY_KEY_SERIAL needs "
            f"Linux 6.2 or later; {serial['detail']})"
        )
    if short is not None and short["readable"] and serial["supported"] is not False:
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


def kernel_report() -> dict[str, Any]:
    """The kernel half of ``kstream backends``: release, policy, algorithms and diagnosis."""
    algorithms = [algorithm_report(name, socket_type) for name, socket_type in ALGORITHMS]
    restrict = af_alg_restrict()
    serial = key_by_serial_support()
    short = short_key_readability()
    diagnosis = _diagnosis(algorithms, restrict, serial, short)
    return {
        "kernel": {
            "release": os.uname().release,
            "af_alg_restrict": restrict,
            "key_by_serial": serial,
            "short_keyring_key_readable": short,
        },
        "algorithms": algorithms,
        "diagnosis": diagnosis or ["no problems found"],
    }


__all__ = [
    "ALGORITHMS",
    "algorithm_report",
    "bind_errno",
    "kernel_report",
    "key_by_serial_support",
    "short_key_readability",
]
