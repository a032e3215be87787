"""What describes the machine a benchmark ran on, so that a reader can judge its numbers.

Both modes print the same description and the same User Mode Linux warning; kernel numbers
from inside UML, or from a machine without AES instructions, say little about real hardware.
"""

from __future__ import annotations

import os
import platform
from typing import Any

from kstream.backends.kernel import KernelBackend


def in_uml() -> bool:
    """Whether this runs inside User Mode Linux (the test harness sets KSTREAM_IN_UML)."""
    if os.environ.get("KSTREAM_IN_UML") == "1":
        return True
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return "User Mode Linux" in f.read()
    except OSError:
        return False


UML_WARNING = (
    "running inside User Mode Linux: kernel numbers are not representative (the guest "
    "kernel has no AES instructions and every system call is a round trip through the host)"
)


def openssl_version() -> str:
    """The OpenSSL that ``cryptography`` runs, e.g. ``OpenSSL 3.0.15``."""
    from cryptography.hazmat.backends.openssl.backend import backend

    return " ".join(str(backend.openssl_version_text()).split()[:2])


def kernel_status() -> tuple[bool, str]:
    """Whether the kernel backend works here and, in one line, why (not).

    Called through the module of each mode that uses it, so that tests can replace it there
    with a simulated kernel: the development hosts have no AF_ALG.
    """
    status = KernelBackend().probe()
    return status.available, status.reason


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    return None


def _distribution() -> str | None:
    try:
        with open("/etc/os-release", encoding="utf-8") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return None


def cpu_count() -> int:
    """CPUs this process may run on (what parallel work can actually use)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def machine_info() -> dict[str, Any]:
    """What a reader needs to judge the numbers: CPUs, kernel, distribution, versions."""
    return {
        "cpus": cpu_count(),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "distribution": _distribution(),
        "python": platform.python_version(),
        "openssl": openssl_version(),
        "in_uml": in_uml(),
    }


def describe_machine(info: dict[str, Any]) -> str:
    """:func:`machine_info` as the one ``machine:`` line of a text report."""
    cpus = info["cpus"]
    parts = [f"{cpus} CPU{'' if cpus == 1 else 's'}"]
    if info.get("cpu_model"):
        parts.append(str(info["cpu_model"]))
    parts.append(f"Linux {info['kernel']}")
    if info.get("distribution"):
        parts.append(str(info["distribution"]))
    parts.append(f"Python {info['python']}")
    parts.append(str(info["openssl"]))
    if info.get("in_uml"):
        parts.append("inside User Mode Linux")
    return ", ".join(parts)
