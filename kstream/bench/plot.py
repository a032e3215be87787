"""``kstream bench --plot``: throughput against chunk size, one line per backend/driver/transfer.

Why a picture: the seed's finding (the kernel path loses most at small chunks, where its two
system calls per chunk dominate, and catches up, or not, at large ones) is a shape, and a
shape is read at a glance from a plot but not from 96 table rows.

matplotlib is an optional extra (``pip install 'kstream[plot]'``); it is imported only here,
only when a plot is asked for, and through :mod:`importlib` so that type checking does not
need it installed.
"""

from __future__ import annotations

import importlib
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from kstream.bench.units import format_size
from kstream.errors import UsageError, io_errors

if TYPE_CHECKING:
    from kstream.bench.memory import MemoryReport

PLOT_HINT = "--plot needs matplotlib: install kstream[plot]"


def check_plot_available() -> None:
    """Fail in one line, before any measuring, when ``--plot`` cannot work."""
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        raise UsageError(PLOT_HINT) from None


def _pyplot() -> Any:
    try:
        matplotlib = importlib.import_module("matplotlib")
        matplotlib.use("Agg")  # files only: never needs a display
        return importlib.import_module("matplotlib.pyplot")
    except ImportError:
        raise UsageError(PLOT_HINT) from None


def series(report: MemoryReport) -> dict[int, dict[str, list[tuple[int, float]]]]:
    """key bits -> line label -> [(chunk, MB/s)], sorted by chunk.

    Encrypt and decrypt are the same CTR operation, so a point is the mean of the two
    medians where both were measured (or whichever was).
    """
    points: dict[tuple[int, str, int], list[float]] = defaultdict(list)
    for row in report.rows:
        label = f"{row.backend} {row.driver} ({row.transfer})"
        if row.warning:
            label += " [generic]"
        points[(row.key_bits, label, row.chunk)].append(row.mb_s)
    out: dict[int, dict[str, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    for (bits, label, chunk), values in sorted(points.items()):
        out[bits][label].append((chunk, sum(values) / len(values)))
    return {bits: dict(lines) for bits, lines in out.items()}


def plot_memory(report: MemoryReport, path: str) -> None:
    """Draw one panel per key size (shared axes) and save it as ``path`` (PNG by suffix)."""
    plt = _pyplot()
    data = series(report)
    if not data:
        raise UsageError("nothing was measured, so there is nothing to plot")
    panels = sorted(data)
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5.5 * len(panels), 4.5), sharey=True, squeeze=False
    )
    chunks = sorted({row.chunk for row in report.rows})
    for ax, bits in zip(axes[0], panels, strict=True):
        for label, pts in sorted(data[bits].items()):
            style = "--" if label.startswith("kernel") else "-"
            ax.plot([c for c, _ in pts], [v for _, v in pts], style, marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(chunks)
        ax.set_xticklabels([format_size(c) for c in chunks])
        ax.set_title(f"AES-{bits}-CTR")
        ax.set_xlabel("chunk size")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("MB/s (10^6 bytes, median)")
    axes[0][-1].legend(fontsize="small")
    title = "kstream bench: AES-CTR in memory"
    if report.warnings:
        title += " (kernel numbers not representative here, see the warnings)"
    fig.suptitle(title)
    fig.tight_layout()
    try:
        with io_errors("write the plot", f"'{path}'"):
            fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)


__all__ = ["PLOT_HINT", "check_plot_available", "plot_memory", "series"]
