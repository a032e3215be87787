"""``kstream backends``: every backend's status, ``auto``'s pick, and the kernel's diagnosis.

It sits above both the selection policy (:mod:`kstream.backends.select`) and the kernel
diagnosis (:mod:`kstream.backends.kernel.diagnosis`), so that the kernel package never has to
import the selection policy, which itself imports the kernel package.
"""

from __future__ import annotations

from typing import Any

from kstream.backends.kernel.diagnosis import kernel_report
from kstream.backends.select import all_backends, select_backend


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
    kernel = kernel_report()
    return {
        "backends": backends,
        "auto": select_backend("auto").name,
        "kernel": kernel["kernel"],
        "algorithms": kernel["algorithms"],
        "diagnosis": kernel["diagnosis"],
    }


def _yes_no(value: object) -> str:
    return "unknown" if value is None else "yes" if value else "no"


def _readable(short: dict[str, Any]) -> str:
    binds = ", ".join(f"{name} {code}" for name, code in short["bind"].items())
    if short["via"] and not short["readable"]:
        return f"no (no keys by serial; hash bind: {binds})"
    return f"{_yes_no(short['readable'])} (hash bind: {binds})"


_RESTRICT = {0: "every algorithm allowed", 1: "allowlisted algorithms only"}


def _process(process: dict[str, Any]) -> str:
    """Whether this process, as it runs, may use the kernel path, and if not what keeps it."""
    who = f"uid {process['uid']}"
    if process["privileged"] is not None:
        who += ", " + ("privileged" if process["privileged"] else "no CAP_NET_ADMIN")
    if process["may_use_kernel"]:
        return f"{who}: may use the kernel backend"
    refused = ", ".join(process["refused"])
    if process["policy"]:
        return f"{who}: may not bind {refused} (af_alg_restrict=1; run with CAP_NET_ADMIN)"
    return f"{who}: may not bind {refused}"


def _kernel_lines(kernel: dict[str, Any]) -> list[str]:
    """The kernel's own section: AF_ALG itself first, since without it nothing below is
    usable and every later line says so instead of what the kernel would do with it."""
    restrict = kernel["af_alg_restrict"]
    af_alg = kernel["af_alg"]
    serial = kernel["key_by_serial"]
    if restrict is None:
        policy = "not present (Linux before 7.3: no policy)"
    else:
        policy = f"{restrict} ({_RESTRICT.get(restrict, 'AF_ALG disabled')})"
    lines = [
        f"kernel: Linux {kernel['release']}",
        "  AF_ALG sockets:  " + ("yes" if af_alg["available"] else f"no ({af_alg['reason']})"),
        f"  af_alg_restrict: {policy}",
        f"  this process:    {_process(kernel['process'])}",
        f"  key by serial:   {_yes_no(serial['supported'])} ({serial['how']}: {serial['detail']})",
    ]
    if af_alg["available"]:
        lines.append(
            "  16-byte keyring key readable: " + _readable(kernel["short_keyring_key_readable"])
        )
    else:
        lines.append("  16-byte keyring key readable: no (no AF_ALG sockets)")
    return lines


def _algorithm_lines(algorithm: dict[str, Any]) -> list[str]:
    lines = [f"{algorithm['name']} ({algorithm['socket_type']}):"]
    if not algorithm["usable"]:
        lines.append(f"  not usable here: {algorithm['reason']}")
        if algorithm["listed"]:
            lines.append(
                "  (/proc/crypto lists "
                + ", ".join(algorithm["listed"])
                + " for the kernel's own use)"
            )
        return lines
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
    return lines


def format_backends_text(report: dict[str, Any]) -> str:
    """``report`` (from :func:`backends_report`) as aligned plain text for a terminal."""
    lines = ["backends:"]
    width = max((len(b["name"]) for b in report["backends"]), default=0)
    for backend in report["backends"]:
        state = "available" if backend["available"] else "unavailable"
        lines.append(f"  {backend['name']:<{width}}  {state:<11}  {backend['reason']}")
    lines.append(f"auto picks: {report['auto']}")
    lines += ["", *_kernel_lines(report["kernel"])]
    for algorithm in report["algorithms"]:
        lines += ["", *_algorithm_lines(algorithm)]
    lines += ["", "diagnosis:"]
    lines += [f"  - {line}" for line in report["diagnosis"]]
    return "\n".join(lines)


__all__ = ["backends_report", "format_backends_text"]
