"""``kstream bench --files``: whole files through kstream, ``openssl enc`` and ``cp``, side by
side, as ratios measured in the same rounds.

Why side by side and interleaved: on a shared 2-core machine the speed of everything drifts
by tens of percent within a minute, so absolute numbers from separate runs cannot be compared.
Every round runs each entry once (the order rotates from round to round), each kstream time
is divided by its baseline's time *in the same round*, and the median of those paired ratios
is what is reported. The project's goals on these ratios are judged by ``.ci/goals.py``, a
developer's script, not here: a user measures a machine, a maintainer judges kstream.

What is timed: a fresh process from start to exit (the CLI entries include Python's start-up,
as a user would see it), plus an ``fsync`` of the output, because kstream fsyncs its output
files and ``openssl``/``cp`` do not (free on tmpfs, decisive on a disk). The coroutine API
runs in this process under :func:`kstream.run`, on the same event loop as the command line
(uvloop when installed), and once more under ``asyncio.run`` (the default loop) for
information: a program awaiting per MiB pays the loop's overhead per await. Peak RSS comes
from ``wait4`` of each kstream process itself (not of ``cat`` or of this process).

This module plans the rounds and runs them; the runs themselves are in
:mod:`kstream.bench.commands`, the files and the checks of outputs in
:mod:`kstream.bench.workfiles`, the other tools timed alongside in :mod:`kstream.bench.peers`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from kstream.bench.commands import (
    KSTREAM,
    BenchError,
    Sample,
    api_file,
    api_stream,
    api_stream_default_loop,
    openssl_command_version,
    run_command,
    run_pipeline,
)
from kstream.bench.machine import (
    UML_WARNING,
    describe_machine,
    in_uml,
    kernel_status,
    machine_info,
)
from kstream.bench.peers import Peer, age_installed, format_peers, peer_rows, prepare
from kstream.bench.units import GIB, MB, MIB, format_size, median, paired_ratios
from kstream.bench.workfiles import (
    MEMORY_FILESYSTEMS,
    decrypts_to,
    default_dir,
    filesystem_type,
    generate_file,
    same_content,
    unlink_quietly,
)
from kstream.errors import UsageError


@dataclass
class Entry:
    """One thing measured each round."""

    id: str
    label: str
    #: (output path, measure peak RSS?) -> the sample.
    run: Callable[[str, bool], Sample]
    backend: str | None = None
    #: The entry whose time this one is divided by, round by round.
    baseline: str | None = None
    #: ``time`` (kstream's time / baseline's: lower is better) or ``throughput`` (baseline's
    #: time / this one's: the API against the CLI, higher is better).
    compare: str = "time"
    #: Checks the output of the first round; returns what is wrong, or None.
    check: Callable[[str], str | None] | None = None
    is_kstream: bool = False
    times: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)


@dataclass
class FilesReport:
    machine: dict[str, Any]
    settings: dict[str, Any]
    entries: list[dict[str, Any]]
    rss_runs: list[dict[str, Any]]
    warnings: list[str]
    many: list[dict[str, Any]] = field(default_factory=list)
    #: The start-up rows, and which install they measured (:mod:`kstream.bench.startup`).
    startup: dict[str, Any] = field(default_factory=dict)
    peers: list[dict[str, Any]] = field(default_factory=list)
    #: A line for each peer that could not be measured here, saying how to add it.
    peers_missing: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"mode": "files", **{f.name: getattr(self, f.name) for f in fields(self)}}


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Paths:
    workdir: str
    input: str
    key: str
    raw: str  # openssl enc's output: the reference for --raw, the input of raw decryption
    auth: str  # kstream's authenticated file, the input of decryption
    out: str


def _available_backends() -> list[str]:
    return ["openssl", *(["kernel"] if kernel_status()[0] else [])]


def plan(
    paths: Paths,
    bits: int,
    iv_hex: str,
    key_hex: str,
    backends: Sequence[str],
    peers: Sequence[Peer] = (),
) -> list[Entry]:
    """Every entry of a round, baselines first, the peers (:mod:`.peers`) last."""
    p = paths
    cipher = f"-aes-{bits}-ctr"
    ossl = ["openssl", "enc", cipher, "-K", key_hex, "-iv", iv_hex]

    def equals(reference: str) -> Callable[[str], str | None]:
        return lambda out: None if same_content(out, reference) else f"differs from {reference}"

    def authentic(out: str) -> str | None:
        # A fresh random IV makes every authenticated file different: check by decrypting.
        if decrypts_to(out, p.input, p.key):
            return None
        return f"does not decrypt to {p.input}"

    entries = [
        Entry(
            "cp",
            "cp",
            lambda out, rss: run_command(["cp", p.input, out], None, rss),
            baseline="cmd-openssl-enc",
        ),
        Entry(
            "cmd-openssl-enc",
            f"openssl enc {cipher}",
            lambda out, rss: run_command([*ossl, "-in", p.input, "-out", out], None, rss),
            check=equals(p.raw),
        ),
        Entry(
            "cmd-openssl-dec",
            f"openssl enc -d {cipher}",
            lambda out, rss: run_command([*ossl, "-d", "-in", p.raw, "-out", out], None, rss),
            check=equals(p.input),
        ),
        # What any filter between two cats can at best reach here.
        Entry(
            "cmd-cat-pipe",
            "cat | cat",
            lambda out, rss: run_pipeline(["cat"], p.input, out, rss),
            baseline="cmd-openssl-pipe",
            check=equals(p.input),
        ),
        Entry(
            "cmd-openssl-pipe",
            f"cat | openssl enc {cipher} | cat",
            lambda out, rss: run_pipeline(ossl, p.input, out, rss),
            check=equals(p.raw),
        ),
    ]
    for b in backends:
        opts = ("-q", "--no-progress", "--backend", b, "-k", p.key)

        def cli(
            verb: str, src: str, *extra: str, opts: tuple[str, ...] = opts, stdout: bool = False
        ) -> Callable[[str, bool], Sample]:
            if stdout:
                return lambda out, rss: run_command(
                    [*KSTREAM, verb, *opts, *extra, src, "-"], out, rss
                )
            return lambda out, rss: run_command(
                [*KSTREAM, verb, *opts, *extra, src, out], None, rss
            )

        def pipe(opts: tuple[str, ...] = opts) -> Callable[[str, bool], Sample]:
            return lambda out, rss: run_pipeline(
                [*KSTREAM, "encrypt", *opts, "-", "-"], p.input, out, rss
            )

        def api(
            fn: Callable[[str, str, str, str], Sample], b: str = b
        ) -> Callable[[str, bool], Sample]:
            return lambda out, rss: fn(p.input, out, p.key, b)  # in-process: no own RSS

        raw = ("--raw", "--iv", iv_hex)
        entries += [
            Entry(
                f"kstream-{b}-raw-enc",
                f"kstream encrypt --raw ({b})",
                cli("encrypt", p.input, *raw),
                b,
                "cmd-openssl-enc",
                check=equals(p.raw),
                is_kstream=True,
            ),
            Entry(
                f"kstream-{b}-raw-dec",
                f"kstream decrypt --raw ({b})",
                cli("decrypt", p.raw, *raw),
                b,
                "cmd-openssl-dec",
                check=equals(p.input),
                is_kstream=True,
            ),
            Entry(
                f"kstream-{b}-enc",
                f"kstream encrypt ({b})",
                cli("encrypt", p.input),
                b,
                "cmd-openssl-enc",
                check=authentic,
                is_kstream=True,
            ),
            Entry(
                f"kstream-{b}-dec",
                f"kstream decrypt ({b})",
                cli("decrypt", p.auth),
                b,
                "cmd-openssl-dec",
                check=equals(p.input),
                is_kstream=True,
            ),
            Entry(
                f"kstream-{b}-stdout",
                f"kstream encrypt IN - > OUT ({b})",
                cli("encrypt", p.input, stdout=True),
                b,
                "cmd-openssl-enc",
                check=authentic,
                is_kstream=True,
            ),
            Entry(
                f"kstream-{b}-pipe",
                f"cat | kstream encrypt - - | cat ({b})",
                pipe(),
                b,
                "cmd-openssl-pipe",
                check=authentic,
                is_kstream=True,
            ),
            Entry(
                f"kstream-{b}-api-file",
                f"API encrypt_file ({b})",
                api(api_file, b),
                b,
                f"kstream-{b}-enc",
                "throughput",
                check=authentic,
            ),
            Entry(
                f"kstream-{b}-api-stream",
                f"API encrypt_stream, aiofiles ({b})",
                api(api_stream, b),
                b,
                f"kstream-{b}-stdout",
                "throughput",
                check=authentic,
            ),
            # The same program under asyncio.run: what the default loop costs.
            Entry(
                f"kstream-{b}-api-stream-asyncio",
                f"API encrypt_stream, aiofiles, asyncio.run ({b})",
                api(api_stream_default_loop, b),
                b,
                f"kstream-{b}-stdout",
                "throughput",
                check=authentic,
            ),
        ]
    return entries + [Entry(p.id, p.label, p.run, check=p.check) for p in peers]


def _paired_ratios(entry: Entry, by_id: dict[str, Entry]) -> list[float]:
    """This entry's time against its baseline's, round by round (the same round's)."""
    if entry.baseline is None or entry.baseline not in by_id:
        return []
    base = by_id[entry.baseline].times
    if entry.compare == "throughput":
        return paired_ratios(base, entry.times)
    return paired_ratios(entry.times, base)


def _rss_runs(paths: Paths, size: int, backends: Sequence[str]) -> list[dict[str, Any]]:
    """Encrypt a sparse file of ``size`` to /dev/null: memory must not grow with the input.

    Sparse and to /dev/null so that a 10 GiB check needs neither 10 GiB of disk nor of RAM
    (on tmpfs a file is RAM); the holes still go through read, cipher and write like data.
    """
    sparse = os.path.join(paths.workdir, "sparse")
    with open(sparse, "wb") as f:
        f.truncate(size)
    runs = []
    try:
        for b in backends:
            for label, extra in (
                ("encrypt IN - > /dev/null", ()),
                ("encrypt --raw IN - > /dev/null", ("--raw", "--iv", "00" * 16)),
            ):
                argv = [
                    *KSTREAM,
                    "encrypt",
                    "-q",
                    "--no-progress",
                    "--backend",
                    b,
                    "-k",
                    paths.key,
                    *extra,
                    sparse,
                    "-",
                ]
                sample = run_command(argv, os.devnull, measure_rss=True)
                rss = (sample.rss_kib or 0) / 1024
                runs.append(
                    {
                        "label": f"kstream {label} ({b}), sparse {format_size(size)} input",
                        "backend": b,
                        "size": size,
                        "seconds": round(sample.seconds, 3),
                        "mb_s": round(size / sample.seconds / MB, 1),
                        "rss_mib": round(rss, 1),
                    }
                )
    finally:
        unlink_quietly(sparse)
    return runs


def run_files(
    *,
    size: int = GIB,
    directory: str | None = None,
    repeat: int = 5,
    warmup: int = 1,
    key_bits: int = 128,
    rss_size: int | None = None,
    backends: Sequence[str] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    many: bool = True,
    startup: bool = True,
) -> FilesReport:
    """Generate the input, run ``warmup + repeat`` interleaved rounds, clean everything up."""
    directory = directory or default_dir()
    if not os.path.isdir(directory):
        raise UsageError(f"--dir '{directory}' is not a directory")
    if shutil.which("openssl") is None or shutil.which("cp") is None:
        raise UsageError("--files compares with the openssl and cp commands; install openssl")
    st = os.statvfs(directory)
    free = st.f_bavail * st.f_frsize
    need = (5 if age_installed() else 4) * size + 16 * MIB  # input, references, output
    if free < need:
        raise UsageError(
            f"--dir '{directory}' has {format_size(free)} free; a {format_size(size)} run "
            f"needs {format_size(need)} (the input, reference files and an output)"
        )
    fstype = filesystem_type(directory)
    on_disk = fstype not in MEMORY_FILESYSTEMS
    backends = list(backends or _available_backends())
    workdir = tempfile.mkdtemp(prefix="kstream-bench-", dir=directory)
    try:
        paths = Paths(
            workdir,
            *(
                os.path.join(workdir, name)
                for name in ("input", "key", "input.raw", "input.kst", "out")
            ),
        )
        key = os.urandom(key_bits // 8)
        iv = os.urandom(16)
        fd = os.open(paths.key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key.hex() + "\n")
        generate_file(paths.input, size)
        run_command(
            [
                "openssl",
                "enc",
                f"-aes-{key_bits}-ctr",
                "-K",
                key.hex(),
                "-iv",
                iv.hex(),
                "-in",
                paths.input,
                "-out",
                paths.raw,
            ]
        )
        run_command(
            [
                *KSTREAM,
                "encrypt",
                "-q",
                "--no-progress",
                "--backend",
                "openssl",
                "-k",
                paths.key,
                paths.input,
                paths.auth,
            ]
        )
        peers, peers_missing = prepare(workdir, paths.input, key_bits)
        entries = plan(paths, key_bits, iv.hex(), key.hex(), backends, peers)
        rounds = warmup + repeat
        steps = rounds * len(entries)
        for r in range(rounds):
            shift = r % len(entries)
            for i, entry in enumerate(entries[shift:] + entries[:shift]):
                if progress is not None:
                    kind = "warm-up" if r < warmup else "round"
                    number = r + 1 if r < warmup else r - warmup + 1
                    progress(r * len(entries) + i, steps, f"{kind} {number}: {entry.label}")
                unlink_quietly(paths.out)
                # The first round checks outputs and measures peak RSS (through a helper
                # whose start-up is then in the time; with a warm-up that is not counted).
                sample = entry.run(paths.out, r == 0)
                if r == 0 and entry.check is not None:
                    problem = entry.check(paths.out)
                    if problem:
                        raise BenchError(f"{entry.label}: the output {problem}")
                unlink_quietly(paths.out)
                if sample.rss_kib is not None:
                    entry.rss_kib.append(sample.rss_kib)
                if r >= warmup:
                    entry.times.append(sample.seconds)
        rss_runs = _rss_runs(paths, rss_size, backends) if rss_size else []
        many_rows: list[dict[str, Any]] = []
        startup_rows: dict[str, Any] = {}
        if many:
            from kstream.bench.many import run_many

            many_rows = run_many(
                workdir,
                paths.key,
                key.hex(),
                iv.hex(),
                key_bits,
                repeat=repeat,
                warmup=warmup,
                progress=(
                    None if progress is None else lambda label: progress(steps, steps, label)
                ),
            )
        if startup:
            from kstream.bench.startup import run_startup

            if progress is not None:
                progress(steps, steps, "start-up")
            startup_rows = run_startup(
                workdir, paths.key, key.hex(), iv.hex(), key_bits, repeat=repeat
            )
        floor = run_command(["true"], measure_rss=True).rss_kib
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    by_id = {e.id: e for e in entries}
    rows = []
    for e in entries:
        ratios = _paired_ratios(e, by_id)
        rows.append(
            {
                "id": e.id,
                "label": e.label,
                "backend": e.backend,
                "median_s": round(median(e.times), 4),
                "mb_s": round(size / median(e.times) / MB, 1) if median(e.times) else 0.0,
                "baseline": e.baseline,
                "compare": e.compare,
                "ratio": round(median(ratios), 3) if ratios else None,
                "ratio_min": round(min(ratios), 3) if ratios else None,
                "ratio_max": round(max(ratios), 3) if ratios else None,
                "peak_rss_mib": round(max(e.rss_kib) / 1024, 1) if e.rss_kib else None,
                "times": [round(t, 4) for t in e.times],
            }
        )
    warnings = []
    if in_uml():
        warnings.append(UML_WARNING)
    settings = {
        "size": size,
        "dir": directory,
        "filesystem": fstype,
        "on_disk": on_disk,
        "repeat": repeat,
        "warmup": warmup,
        "key_bits": key_bits,
        "backends": backends,
        "openssl_command": openssl_command_version(),
        "rss_size": rss_size,
        #: What the RSS helper shows for a command that uses almost nothing (``true``).
        "rss_floor_mib": None if floor is None else round(floor / 1024, 1),
    }
    return FilesReport(
        machine_info(),
        settings,
        rows,
        rss_runs,
        warnings,
        many_rows,
        startup_rows,
        peer_rows({e.id: (e.label, e.times) for e in entries}),
        peers_missing,
    )


# --------------------------------------------------------------------------- output


def format_files_report(report: FilesReport) -> str:
    s = report.settings
    where = f"{s['dir']} ({s['filesystem']}{', a disk' if s['on_disk'] else ''})"
    lines = [
        f"kstream bench --files: {format_size(s['size'])} generated file in {where}, "
        f"AES-{s['key_bits']}-CTR, medians of {s['repeat']} interleaved rounds after "
        f"{s['warmup']} warm-up",
        f"machine: {describe_machine(report.machine)}",
        f"openssl command: {s['openssl_command'] or 'unknown'}; kstream's OpenSSL "
        f"(cryptography): {report.machine['openssl']}",
        "",
    ]
    by_id = {row["id"]: row for row in report.entries}
    table = [("", "median s", "MB/s", "ratio", "rounds", "vs", "peak RSS")]
    for row in report.entries:
        base = by_id.get(row["baseline"] or "")
        ratio = spread = vs = ""
        if row["ratio"] is not None:
            ratio = f"{row['ratio']:.3f}x"  # 3 digits: 0.853 must not print as 0.85
            spread = f"{row['ratio_min']:.2f}-{row['ratio_max']:.2f}"
        if base is not None:
            kind = "throughput of " if row["compare"] == "throughput" else "time of "
            vs = kind + base["label"]
        rss = "" if row["peak_rss_mib"] is None else f"{row['peak_rss_mib']:.0f} MiB"
        median_s, mb_s = f"{row['median_s']:.3f}", f"{row['mb_s']:,.0f}"
        table.append((row["label"], median_s, mb_s, ratio, spread, vs, rss))
    widths = [max(len(cells[i]) for cells in table) for i in range(7)]
    for cells in table:
        aligned = [
            cell.ljust(width) if i in (0, 5) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        lines.append("  ".join(aligned).rstrip())
    lines.append(
        "(ratio: the time / the baseline's in the same round, lower is better; for the API "
        "its throughput against the command line's, higher is better; medians, and their "
        "range over the rounds)"
    )
    for run in report.rss_runs:
        lines.append(
            f"  {run['rss_mib']:5.1f} MiB  peak RSS, {run['label']} ({run['mb_s']:,.0f} MB/s)"
        )
    if not report.rss_runs:
        lines.append("  (peak RSS for a larger, sparse input: add --rss-size 10G)")
    if s.get("rss_floor_mib") is not None:
        lines.append(
            f"  (peak RSS is measured once per entry through a small launcher, which "
            f"shows {s['rss_floor_mib']:.0f} MiB even for 'true'; the API runs in "
            "this process and has no RSS of its own)"
        )
    lines += format_peers(report.peers, report.peers_missing)
    if report.many:
        from kstream.bench.many import format_many

        lines += format_many(report.many)
    if report.startup:
        from kstream.bench.startup import format_startup

        lines += format_startup(report.startup)
    if report.warnings:
        lines.append("")
        lines += [f"WARNING: {warning}" for warning in report.warnings]
    return "\n".join(lines)
