"""What the kernel crypto API offers here, and why the kernel backend does or does not work.

This is the data behind ``kstream backends``: it asks the kernel directly (an AF_ALG socket,
a bind, a ``setsockopt``) rather than guessing from configuration, because what matters is
what a stream would meet: a missing module, an ``af_alg_restrict`` policy, a kernel too old
for keyring keys, or only the slow generic C AES. Every check uses throwaway sockets.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import struct
from typing import Any

from kstream.backends import all_backends, select_backend
from kstream.backends.afalg import (
    ALG_SET_KEY_BY_KEY_SERIAL,
    CTR_AES,
    af_alg_restrict,
    bind_refused_reason,
    generic_warning,
    no_af_alg_reason,
)
from kstream.procfs import implementations, kernel_pick, read_proc_crypto

#: The algorithms kstream uses or will use: the cipher, and the MAC of authenticated formats.
ALGORITHMS = ((CTR_AES, "skcipher"), ("hmac(sha256)", "hash"))
KEY_BY_SERIAL_SINCE = (6, 2)


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


def algorithm_report(name: str, socket_type: str) -> dict[str, Any]:
    """Every implementation of ``name`` that ``/proc/crypto`` lists, and the kernel's pick."""
    code = bind_errno(socket_type, name)
    algs = read_proc_crypto()
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
    algorithms: list[dict[str, Any]], restrict: int | None, serial: dict[str, Any]
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
    ctr = binds.get(CTR_AES)
    if ctr is not None and ctr["picked"] is not None:
        warning = generic_warning(ctr["picked"])
        if warning is not None:
            lines.append(f"{CTR_AES}: {warning}")
    return lines


def backends_report() -> dict[str, Any]:
    """Everything ``kstream backends`` shows, as a JSON-able dict."""
    backends = []
    for backend in all_backends():
        status = backend.probe()
        backends.append(
            {
                "name": status.name,
                "available": status.available,
                "reason": status.reason,
                "details": dict(status.details),
            }
        )
    algorithms = [algorithm_report(name, socket_type) for name, socket_type in ALGORITHMS]
    restrict = af_alg_restrict()
    serial = key_by_serial_support()
    diagnosis = _diagnosis(algorithms, restrict, serial)
    return {
        "backends": backends,
        "auto": select_backend("auto").name,
        "kernel": {
            "release": os.uname().release,
            "af_alg_restrict": restrict,
            "key_by_serial": serial,
        },
        "algorithms": algorithms,
        "diagnosis": diagnosis or ["no problems found"],
    }


def _yes_no(value: object) -> str:
    return "unknown" if value is None else "yes" if value else "no"


def format_backends_text(report: dict[str, Any]) -> str:
    """``report`` (from :func:`backends_report`) as aligned plain text for a terminal."""
    lines = ["backends:"]
    width = max((len(b["name"]) for b in report["backends"]), default=0)
    for backend in report["backends"]:
        state = "available" if backend["available"] else "unavailable"
        lines.append(f"  {backend['name']:<{width}}  {state:<11}  {backend['reason']}")
    lines.append(f"auto picks: {report['auto']}")
    kernel = report["kernel"]
    restrict = kernel["af_alg_restrict"]
    serial = kernel["key_by_serial"]
    lines += [
        "",
        f"kernel: Linux {kernel['release']}",
        "  af_alg_restrict: " + ("not present" if restrict is None else str(restrict)),
        f"  key by serial:   {_yes_no(serial['supported'])} ({serial['how']}: {serial['detail']})",
    ]
    for algorithm in report["algorithms"]:
        lines += ["", f"{algorithm['name']} ({algorithm['socket_type']}):"]
        if algorithm["bind"] != "ok":
            lines.append(f"  bind: {algorithm['bind']}")
        if not algorithm["drivers"]:
            lines.append("  no implementation listed in /proc/crypto")
        dwidth = max((len(d["driver"]) for d in algorithm["drivers"]), default=0)
        for driver in algorithm["drivers"]:
            flags = "async" if driver["async"] else "sync"
            if driver["internal"]:
                flags += ", internal"
            mark = "  <- kernel's pick" if driver["picked"] else ""
            lines.append(
                f"  {driver['driver']:<{dwidth}}  priority {driver['priority']:>4}  "
                f"module {driver['module']:<12}  {flags:<5}  selftest {driver['selftest']}{mark}"
            )
    lines += ["", "diagnosis:"]
    lines += [f"  - {line}" for line in report["diagnosis"]]
    return "\n".join(lines)


__all__ = [
    "ALGORITHMS",
    "ALG_SET_KEY_BY_KEY_SERIAL",
    "algorithm_report",
    "backends_report",
    "bind_errno",
    "format_backends_text",
    "key_by_serial_support",
]
