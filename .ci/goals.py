#!/usr/bin/env python3
"""kstream's performance goals, judged on the output of ``kstream bench --files --json``.

``kstream bench`` is a user's tool: it measures a machine and prints ratios. The goals are the
project's, so they live here, in a script that a maintainer (or CI) runs::

    .venv/bin/python .ci/goals.py                       # 1 GiB in /dev/shm: about 5 minutes
    .venv/bin/python .ci/goals.py --size 8M --repeat 1  # a smoke run: the time goals are info
    .venv/bin/python .ci/goals.py --json bench.json     # judge a saved run

Options other than ``--json`` and ``--strict`` go to ``kstream bench --files``. The exit
status is 0 whatever the verdicts (shared machines are too noisy for a benchmark to gate
on), 1 with ``--strict`` when a goal is missed, and the benchmark's own status if it fails.
docs/benchmark.md says what each measurement is.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from kstream.bench.units import format_size

#: kstream's time / the baseline's in the same round, files on tmpfs (the CPU's work), by
#: entry: ``kstream-<backend>-<kind>``.
TMPFS = {"raw-enc": 0.70, "raw-dec": 0.70, "enc": 0.80, "dec": 0.80, "pipe": 0.85}
#: Every time goal on a disk, where writeback sets the pace.
ON_DISK = 1.05
#: The API's throughput / the command line's (higher is better).
API = {"api-file": 0.90, "api-stream": 0.90}
#: The time goals hold for files this large; under it start-up dominates, so they are info.
CALIBRATED = 1 << 30
#: Peak RSS of any kstream process, MiB: memory must not grow with the input.
RSS_MIB = 64
#: Many files, one command each way: kstream's time / a shell loop's, by (files, size, loop).
MANY = {
    (1000, 4096, "openssl-loop"): 0.35,
    (1000, 4096, "age-loop"): 0.50,
    (100, 10 << 20, "openssl-loop"): 0.60,
}
#: Start-up: the time / ``python -c pass``'s, from the same clean venv.
STARTUP = {"version": 1.3, "one-small": 3.5}


def _verdict(met: bool, judged: bool = True) -> str:
    return ("PASS" if met else "MISS") if judged else "info"


def _spread(row: dict[str, Any]) -> str:
    if row.get("ratio_min") is None or row["ratio_min"] == row["ratio_max"]:
        return ""
    return f" (rounds {row['ratio_min']:.2f}-{row['ratio_max']:.2f})"


def judge(doc: dict[str, Any]) -> list[dict[str, str]]:
    """One verdict per goal that ``doc`` (a ``kstream bench --files --json``) measured: PASS,
    MISS, or info (the kernel's ratios, and time goals for files under CALIBRATED), and a
    ``----`` line for each goal it did not measure."""
    settings = doc["settings"]
    calibrated = settings["size"] >= CALIBRATED
    by_id = {row["id"]: row for row in doc["entries"]}
    out: list[dict[str, str]] = []

    def add(verdict: str, value: str, goal: str, what: str) -> None:
        out.append({"verdict": verdict, "value": value, "goal": goal, "what": what})

    for backend in settings["backends"]:
        for kind, limit in (*TMPFS.items(), *API.items()):
            row = by_id.get(f"kstream-{backend}-{kind}")
            if row is None or row["ratio"] is None:
                continue
            base = by_id[row["baseline"]]["label"]
            judged = backend == "openssl" and calibrated
            if kind in API:
                met, goal = row["ratio"] >= limit, f">= {limit:.2f}x"
            else:
                limit = ON_DISK if settings["on_disk"] else limit
                met, goal = row["ratio"] <= limit, f"<= {limit:.2f}x"
            what = f"{row['label']} vs {base}{_spread(row)}"
            add(_verdict(met, judged), f"{row['ratio']:.3f}x", goal, what)
    peaks = [
        row["peak_rss_mib"]
        for row in doc["entries"]
        if row["id"].startswith("kstream-") and row["peak_rss_mib"] is not None
    ]
    if peaks:
        peak = max(peaks)
        add(
            _verdict(peak <= RSS_MIB),
            f"{peak:.1f} MiB",
            f"<= {RSS_MIB} MiB",
            "peak RSS of any kstream process",
        )
    for run in doc["rss_runs"]:
        rss = run["rss_mib"]
        add(
            _verdict(rss <= RSS_MIB),
            f"{rss:.1f} MiB",
            f"<= {RSS_MIB} MiB",
            f"peak RSS, {run['label']}",
        )
    many = {(r["files"], r["file_size"], r["vs"]): r for r in doc["many"] if "vs" in r}
    for (files, size, loop), limit in MANY.items():
        goal, row = f"<= {limit:.2f}x", many.get((files, size, loop))
        if row is None:
            add(
                "----",
                "",
                goal,
                f"{files} files of {format_size(size)} against the {loop}: not measured",
            )
            continue
        what = f"{row['set']}: kstream vs {row['baseline']}{_spread(row)}"
        add(_verdict(row["ratio"] <= limit), f"{row['ratio']:.3f}x", goal, what)
    startup = {row["id"]: row for row in doc["startup"].get("rows", [])}
    for case, limit in STARTUP.items():
        goal, row = f"<= {limit:.2f}x", startup.get(case)
        if row is None:
            add("----", "", goal, f"start-up ({case}): not measured")
            continue
        what = f"{row['label']} vs python -c pass{_spread(row)}"
        if case == "one-small" and "floor" in startup:  # what no kstream code could go under
            what += f"; cryptography alone: {startup['floor']['ratio']:.2f}x"
        add(_verdict(row["ratio"] <= limit), f"{row['ratio']:.3f}x", goal, what)
    return out


def report(doc: dict[str, Any], verdicts: Sequence[dict[str, str]]) -> str:
    settings = doc["settings"]
    where = f"{settings['dir']} ({settings['filesystem']})"
    lines = [
        f"kstream's goals, judged on kstream bench --files: {format_size(settings['size'])} in "
        f"{where}, medians of {settings['repeat']} interleaved rounds"
    ]
    if settings["size"] < CALIBRATED:
        lines.append(
            f"(the time goals hold for files of {CALIBRATED >> 30} GiB or more: at this "
            "size start-up dominates, so their ratios are info)"
        )
    for v in verdicts:
        lines.append(f"  {v['verdict']:<4}  {v['value']:>9}  goal {v['goal']:<9}  {v['what']}")
    if doc["startup"]:
        lines.append(f"  (start-up measured in {doc['startup']['install']})")
    counts = {
        name: sum(v["verdict"] == name for v in verdicts) for name in ("PASS", "MISS", "info")
    }
    lines.append(", ".join(f"{n} {name}" for name, n in counts.items()))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Judge kstream's performance goals on kstream bench --files; other "
        "options go to the benchmark.",
    )
    parser.add_argument("--json", metavar="FILE", help="judge this saved --json output")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    args, bench_args = parser.parse_known_args(argv)
    if args.json is not None:
        with open(args.json) as f:
            doc = json.load(f)
    else:
        argv_bench = [sys.executable, "-m", "kstream", "bench", "--files", "--json", *bench_args]
        proc = subprocess.run(argv_bench, stdout=subprocess.PIPE, check=False)
        if proc.returncode:
            print(f"goals: kstream bench failed with status {proc.returncode}", file=sys.stderr)
            return proc.returncode
        doc = json.loads(proc.stdout)
    verdicts = judge(doc)
    print(report(doc, verdicts))
    return 1 if args.strict and any(v["verdict"] == "MISS" for v in verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
