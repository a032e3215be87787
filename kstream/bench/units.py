"""Sizes, defaults and the small helpers every part of ``kstream bench`` shares.

Kept free of anything costly to import: the command line imports this module on every
kstream run, for the defaults and the size parser of its ``bench`` options.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from kstream.backends.base import Transfer

MB = 1_000_000
KIB = 1024
MIB = 1024 * 1024
GIB = 1024 * MIB

#: The chunk sizes of the seed's table: a small request, a page-ish one, kstream's own
#: 63 KiB send size (what fits the kernel's default socket buffer), and a large one.
DEFAULT_CHUNKS = (1 * KIB, 16 * KIB, 63 * KIB, 1 * MIB)
KEY_BITS = (128, 192, 256)
#: How data enters the kernel: the backend's ``update`` (``sendmsg``), ``update_from_fd`` on a
#: pipe (``splice``) and on a memory file (``sendfile``).
KERNEL_TRANSFERS: tuple[Transfer, ...] = ("sendmsg", "splice", "sendfile")
#: OpenSSL: ``update`` (a new output object per call) and ``update_into`` a reused output
#: buffer (what kstream's streaming path uses, because fresh 1 MiB objects cost page faults).
OPENSSL_TRANSFERS = ("update", "update_into")
OPS = ("encrypt", "decrypt")
BACKENDS = ("openssl", "kernel")
DEFAULT_SECONDS = 0.2
#: Without ``--seconds``, cells share this budget (at most DEFAULT_SECONDS, at least
#: MIN_SECONDS each), so that a kernel listing many drivers still finishes in about 30 s.
TOTAL_SECONDS = 30.0
MIN_SECONDS = 0.05
DEFAULT_REPEAT = 5

_SIZE_UNITS = {"": 1, "k": KIB, "m": MIB, "g": GIB, "t": 1024 * GIB}


def parse_size(text: str) -> int:
    """``4096``, ``63K``, ``1M``, ``1G``, ``10GiB`` (binary units) as a number of bytes."""
    compact = text.strip().lower().removesuffix("ib").removesuffix("b")
    number, unit = compact, ""
    if compact and compact[-1] in _SIZE_UNITS:
        number, unit = compact[:-1], compact[-1]
    try:
        value = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a size (examples: 4096, 63K, 1M, 1G)"
        ) from None
    size = int(value * _SIZE_UNITS[unit])
    if size < 1:
        raise argparse.ArgumentTypeError(f"size '{text}' must be at least 1 byte")
    return size


def format_size(size: int) -> str:
    """``1 KiB``, ``63 KiB``, ``1 MiB``, ``1 GiB``; exact where the size is a whole unit."""
    for unit, name in ((GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")):
        if size >= unit:
            value = size / unit
            return f"{value:.0f} {name}" if size % unit == 0 else f"{value:.1f} {name}"
    return f"{size} B"


def median(values: Sequence[float]) -> float:
    """The median, and 0.0 for no values, so that an entry that never ran still prints."""
    import statistics  # not at the top: the CLI imports this module on every run

    return float(statistics.median(values)) if values else 0.0


def paired_ratios(times: Sequence[float], base: Sequence[float]) -> list[float]:
    """Each time divided by the base time of the same round (rounds with no base time left
    out): on a noisy machine only times measured side by side compare."""
    return [t / b for t, b in zip(times, base, strict=True) if b > 0]
