"""The ``kstream bench`` subcommand: its options, and running the mode they choose.

Cheap to import, because the kstream command line imports it on every run to build its
parser: at import time only :mod:`kstream.bench.units` comes along; the measuring modules
(:mod:`kstream.bench.memory`, :mod:`kstream.bench.files`, :mod:`kstream.bench.plot`) are
imported by :func:`cmd_bench` when a benchmark runs. See :mod:`kstream.bench` for what is
measured and why.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from kstream.bench.units import (
    BACKENDS,
    DEFAULT_CHUNKS,
    DEFAULT_REPEAT,
    DEFAULT_SECONDS,
    GIB,
    KERNEL_TRANSFERS,
    KEY_BITS,
    OPENSSL_TRANSFERS,
    OPS,
    TOTAL_SECONDS,
    parse_size,
)
from kstream.errors import KstreamError, UsageError


def _size_list(text: str) -> list[int]:
    return [parse_size(part) for part in text.split(",") if part.strip()]


def _bits_list(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if part not in ("128", "192", "256"):
            raise argparse.ArgumentTypeError(f"key size '{part}' is not 128, 192 or 256")
        out.append(int(part))
    return out


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def _count(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}")
    return value


def add_bench_parser(sub: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Register ``kstream bench`` on the CLI's subparsers object ``sub``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "bench",
        parents=[common],
        help="measure AES-CTR speed per backend/driver, or whole files against openssl enc",
        description="In memory (default): MB/s and ops/s of every backend, kernel ctr(aes) "
        "driver, transfer mode, key size and chunk size, like kcapi-speed. With --files: "
        "whole-file runs of kstream, openssl enc and cp side by side, as ratios measured in "
        "the same rounds, and of age and Tink's streaming AEAD where installed. "
        "Medians of --repeat runs after a warm-up.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="print a JSON document instead of text")
    p.add_argument(
        "--repeat",
        type=lambda t: _count(t, 1),
        default=DEFAULT_REPEAT,
        metavar="N",
        help=f"measured runs per cell or entry; the median is reported (default {DEFAULT_REPEAT})",
    )
    p.add_argument(
        "--key-bits",
        type=_bits_list,
        metavar="BITS",
        default=None,
        help="key sizes, e.g. 128 or 128,256 (default: all three in memory, 128 with --files)",
    )
    memory = p.add_argument_group("in memory (default mode)")
    memory.add_argument(
        "--seconds",
        type=_positive_float,
        default=None,
        metavar="S",
        help="time budget per cell, warm-up included (default "
        f"{DEFAULT_SECONDS}, less when there are more than "
        f"{TOTAL_SECONDS / DEFAULT_SECONDS:.0f} cells)",
    )
    memory.add_argument(
        "--chunk",
        type=_size_list,
        metavar="SIZES",
        default=None,
        help="chunk sizes, e.g. 1K,63K (default 1K,16K,63K,1M)",
    )
    memory.add_argument(
        "--backend",
        action="append",
        choices=BACKENDS,
        default=None,
        help="only this backend (repeatable; default: every available one)",
    )
    memory.add_argument(
        "--driver",
        action="append",
        metavar="NAME",
        default=None,
        help="kernel: only this ctr(aes) driver, e.g. ctr(aes-generic) "
        "(repeatable; default: every driver /proc/crypto lists)",
    )
    memory.add_argument(
        "--transfer",
        action="append",
        default=None,
        choices=(*OPENSSL_TRANSFERS, *KERNEL_TRANSFERS),
        help="only this transfer mode (repeatable)",
    )
    memory.add_argument(
        "--op",
        action="append",
        choices=OPS,
        default=None,
        help="only this operation (repeatable; default both)",
    )
    memory.add_argument(
        "--plot",
        metavar="FILE.png",
        default=None,
        help="also draw MB/s against chunk size (needs kstream[plot])",
    )
    files = p.add_argument_group("whole files (--files)")
    files.add_argument(
        "--files",
        action="store_true",
        help="compare whole-file runs with openssl enc and cp (and age, Tink)",
    )
    files.add_argument(
        "--size",
        type=parse_size,
        default=GIB,
        metavar="SIZE",
        help="size of the generated file (default 1G)",
    )
    files.add_argument(
        "--dir",
        metavar="DIR",
        default=None,
        help="where to put the files (default /dev/shm if it exists, else the temp directory)",
    )
    files.add_argument(
        "--warmup",
        type=lambda t: _count(t, 0),
        default=1,
        metavar="N",
        help="unmeasured rounds first; they also check the outputs (default 1)",
    )
    files.add_argument(
        "--rss-size",
        type=parse_size,
        default=None,
        metavar="SIZE",
        help="also show peak RSS when encrypting a sparse input of SIZE, "
        "e.g. 10G (written to /dev/null)",
    )
    files.add_argument(
        "--many",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time many files (1,000 of 4 KiB, 100 of 10 MiB; one "
        "kstream command each way against a shell loop of openssl enc, and "
        "of age where installed) (default: yes)",
    )
    files.add_argument(
        "--startup",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time kstream --version and one 4 KiB file encrypted against "
        "python -c pass (default: yes)",
    )
    return p


def _progress_printer() -> Callable[[int, int, str], None] | None:
    if not sys.stderr.isatty():
        return None

    def show(index: int, total: int, label: str) -> None:
        sys.stderr.write(f"\r\x1b[K[{index + 1}/{total}] {label}")
        if index + 1 == total:
            sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()

    return show


def cmd_bench(args: argparse.Namespace) -> int:
    """Run ``kstream bench`` with parsed ``args``; the exit status is 0 unless it failed."""
    # The measuring code is imported only here: this module is imported by every kstream
    # invocation (to build the parser), and interpreter start-up is already a large share
    # of a short CLI run.
    if args.files:
        if args.plot is not None:
            raise UsageError("--plot draws the in-memory results; it does not apply to --files")
        from kstream.bench.files import format_files_report, run_files

        report = run_files(
            size=args.size,
            directory=args.dir,
            repeat=args.repeat,
            warmup=args.warmup,
            key_bits=(args.key_bits or [128])[0],
            rss_size=args.rss_size,
            many=args.many,
            startup=args.startup,
            progress=_progress_printer(),
        )
        print(json.dumps(report.to_json(), indent=2) if args.json else format_files_report(report))
        return 0
    from kstream.bench.memory import format_memory_table, run_memory

    if args.plot is not None:
        from kstream.bench.plot import check_plot_available

        check_plot_available()
    memory = run_memory(
        backends=args.backend or BACKENDS,
        drivers=args.driver or (),
        transfers=args.transfer or (),
        key_bits=args.key_bits or KEY_BITS,
        chunks=args.chunk or DEFAULT_CHUNKS,
        ops=args.op or OPS,
        seconds=args.seconds,
        repeat=args.repeat,
        progress=_progress_printer(),
    )
    if args.plot is not None:
        from kstream.bench.plot import plot_memory

        plot_memory(memory, args.plot)
    print(json.dumps(memory.to_json(), indent=2) if args.json else format_memory_table(memory))
    if args.plot is not None and not args.json:
        print(f"plot written to {args.plot}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kstream.bench``: the subcommand without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog="kstream")
    parser.add_argument("--debug", action="store_true")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    add_bench_parser(sub, common)
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    try:
        return cmd_bench(args)
    except KstreamError as exc:
        if args.debug:
            raise
        sys.stderr.write(f"kstream: error: {exc}\n")
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
