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
    return f"{_yes_no(short['readable'])} (hash bind: {binds})"


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
        "  16-byte keyring key readable: " + _readable(kernel["short_keyring_key_readable"]),
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


__all__ = ["backends_report", "format_backends_text"]
