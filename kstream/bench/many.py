"""``kstream bench --files``, second part: many small or mid-sized files, and start-up.

A backup script that runs one command per file pays the interpreter's start-up per file, so
what counts is one ``kstream`` command per direction for the whole set against a shell loop
that runs ``openssl enc`` (or ``age``, where installed) once per file, timed side by side in
interleaved rounds like the rest of ``--files``. Start-up itself is timed as a user sees it:
the console script, a fresh process each time, median of several.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kstream.bench.commands import BenchError, run_command
from kstream.bench.peers import age_installed, age_recipient
from kstream.bench.units import MIB, format_size, median
from kstream.bench.workfiles import generate_file, same_content

#: (files, size of each, goal: kstream's time / the openssl loop's, goal against age's loop)
SETS = ((1000, 4096, 0.35, 0.5), (100, 10 * MIB, 0.6, None))
#: Absolute start-up goals in seconds (a clean venv on the development machine).
STARTUP_GOALS = {"version": 0.020, "one-small": 0.060}


def kstream_command() -> list[str]:
    """The console script beside this interpreter (what a user runs), else ``python -m``."""
    script = os.path.join(os.path.dirname(sys.executable), "kstream")
    return [script] if os.access(script, os.X_OK) else [sys.executable, "-m", "kstream"]


def editable_install() -> bool:
    """Whether kstream runs from an editable install (``pip install -e``): its import hook,
    loaded at every start by a ``.pth`` file, is in this process too."""
    return any(name.startswith("__editable__") and "kstream" in name for name in sys.modules)


def _timed(argv: Sequence[str]) -> float:
    return run_command(argv).seconds


def _sh(script: str) -> float:
    """A shell script, timed: the loops are the baselines a user would otherwise write."""
    return _timed(["sh", "-c", script])


@dataclass
class Way:
    """One way to encrypt and then decrypt a whole set of files, timed per round."""

    id: str
    label: str
    #: Encrypts the set in ``src`` and decrypts it again; returns the seconds both took.
    run: Callable[[str], float]
    times: list[float] = field(default_factory=list)


def _ways(key_path: str, key_hex: str, iv_hex: str, bits: int, workdir: str) -> list[Way]:
    kst = shlex.join(kstream_command())
    ossl = f"openssl enc -aes-{bits}-ctr -K {key_hex} -iv {iv_hex}"

    def loop(enc: str, dec: str) -> Callable[[str], float]:
        def run(src: str) -> float:
            q = shlex.quote(src)
            return _sh(f"for f in {q}/f*; do {enc}; done && for f in {q}/f*.enc; do {dec}; done")

        return run

    def kstream(src: str) -> float:
        q = shlex.quote(src)
        key = shlex.quote(key_path)
        return _sh(
            f"{kst} encrypt -q --no-progress -k {key} --suffix .enc {q}/f* && "
            f"{kst} decrypt -q --no-progress -k {key} --suffix .enc --output-dir "
            f"{q}/out {q}/f*.enc"
        )

    ways = [
        Way(
            "openssl-loop",
            "shell loop: openssl enc, then openssl enc -d, once per file",
            loop(
                f'{ossl} -in "$f" -out "$f.enc"',
                f'{ossl} -d -in "$f" -out "{workdir}/dec/$(basename "$f" .enc)"',
            ),
        ),
        Way("kstream", "kstream encrypt FILE..., then kstream decrypt FILE...", kstream),
    ]
    if age_installed():
        identity = os.path.join(workdir, "age.key")
        recipient = age_recipient(identity)
        ways.append(
            Way(
                "age-loop",
                "shell loop: age -e, then age -d, once per file",
                loop(
                    f'age -e -r {recipient} -o "$f.enc" "$f"',
                    f"age -d -i {shlex.quote(identity)} -o "
                    f'"{workdir}/dec/$(basename "$f" .enc)" "$f"',
                ),
            )
        )
    return ways


def _clean(src: str, workdir: str) -> None:
    for name in os.listdir(src):
        if name.endswith(".enc"):
            os.unlink(os.path.join(src, name))
    for d in (os.path.join(src, "out"), os.path.join(workdir, "dec")):
        shutil.rmtree(d, ignore_errors=True)
        os.mkdir(d)


def run_many(
    workdir: str,
    key_path: str,
    key_hex: str,
    iv_hex: str,
    bits: int,
    *,
    repeat: int,
    warmup: int,
    sets: Sequence[tuple[int, int, float, float | None]] = SETS,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Each set: generate it, run every way in interleaved rounds, check the outputs once."""
    rows: list[dict[str, Any]] = []
    for count, size, goal, age_goal in sets:
        src = os.path.join(workdir, f"many-{count}x{size}")
        os.mkdir(src)
        for i in range(count):
            generate_file(os.path.join(src, f"f{i:05d}"), size)
        ways = _ways(key_path, key_hex, iv_hex, bits, workdir)
        try:
            for r in range(warmup + repeat):
                for way in ways[r % len(ways) :] + ways[: r % len(ways)]:
                    if progress is not None:
                        progress(f"{count} x {format_size(size)}: {way.label}")
                    _clean(src, workdir)
                    seconds = way.run(src)
                    if r == 0:
                        _check(src, workdir, way)
                    if r >= warmup:
                        way.times.append(seconds)
        finally:
            shutil.rmtree(src, ignore_errors=True)
        by_id = {w.id: w for w in ways}
        base = by_id["openssl-loop"].times
        for way in ways:
            row: dict[str, Any] = {
                "set": f"{count} files of {format_size(size)}",
                "id": way.id,
                "label": way.label,
                "median_s": round(median(way.times), 3),
            }
            if way.id == "kstream":
                ratios = [k / b for k, b in zip(way.times, base, strict=True)]
                row.update(
                    ratio=round(median(ratios), 3),
                    baseline=by_id["openssl-loop"].label,
                    goal=f"<= {goal:.2f}x",
                    verdict="PASS" if median(ratios) <= goal else "MISS",
                )
                rows.append(row)
                if "age-loop" in by_id and age_goal is not None:
                    age = [k / a for k, a in zip(way.times, by_id["age-loop"].times, strict=True)]
                    rows.append(
                        {
                            **row,
                            "ratio": round(median(age), 3),
                            "baseline": by_id["age-loop"].label,
                            "goal": f"<= {age_goal:.2f}x",
                            "verdict": "PASS" if median(age) <= age_goal else "MISS",
                        }
                    )
                continue
            rows.append(row)
    return rows


def _check(src: str, workdir: str, way: Way) -> None:
    """Every file came back equal (the first round of each way)."""
    out = os.path.join(src, "out") if way.id == "kstream" else os.path.join(workdir, "dec")
    for name in os.listdir(src):
        if (
            name.startswith("f")
            and not name.endswith(".enc")
            and not same_content(os.path.join(src, name), os.path.join(out, name))
        ):
            raise BenchError(f"{way.label}: {name} did not come back equal")


def run_startup(
    workdir: str, key_path: str, key_hex: str, iv_hex: str, bits: int, *, repeat: int
) -> list[dict[str, Any]]:
    """``kstream --version`` and one 4 KiB file encrypted, fresh processes, medians, beside
    what bounds them from below: this interpreter starting and doing nothing, and ``openssl
    enc`` on the same file (interleaved, like every other comparison here).

    ``PYTHONDONTWRITEBYTECODE`` is lifted for these runs: an installed kstream has its
    bytecode compiled at install time, but an editable install with the variable set would
    compile every module on every start, which no user pays.
    """
    small = os.path.join(workdir, "small")
    generate_file(small, 4096)
    kst = kstream_command()
    cases = [
        (
            "python",
            "python -c pass (this interpreter, for reference)",
            [sys.executable, "-c", "pass"],
        ),
        ("version", "kstream --version", [*kst, "--version"]),
        (
            "openssl-small",
            "openssl enc, one 4 KiB file (for reference)",
            [
                "openssl",
                "enc",
                f"-aes-{bits}-ctr",
                "-K",
                key_hex,
                "-iv",
                iv_hex,
                "-in",
                small,
                "-out",
                small + ".enc",
            ],
        ),
        (
            "one-small",
            "kstream encrypt, one 4 KiB file",
            [*kst, "encrypt", "-q", "--no-progress", "-f", "-k", key_path, small, small + ".kst"],
        ),
    ]
    saved = os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    try:
        times: dict[str, list[float]] = {case_id: [] for case_id, _, _ in cases}
        for _, _, argv in cases:
            _timed(argv)  # warm the page cache and write bytecode where it is missing
        for _ in range(max(repeat, 5) * 2):
            for case_id, _, argv in cases:
                times[case_id].append(_timed(argv))
    finally:
        if saved is not None:
            os.environ["PYTHONDONTWRITEBYTECODE"] = saved
    rows = []
    interpreter = median(times["python"])
    for case_id, label, _ in cases:
        seconds = median(times[case_id])
        row: dict[str, Any] = {"id": case_id, "label": label, "median_s": round(seconds, 4)}
        if case_id in STARTUP_GOALS:
            goal = STARTUP_GOALS[case_id]
            # The goals are absolute, but a shared VM's interpreter alone starts much
            # slower in some hours than in others: the ratio to it is what stays put.
            row |= {
                "goal": f"<= {goal * 1000:.0f} ms",
                "verdict": "PASS" if seconds <= goal else "MISS",
                "vs_python": round(seconds / interpreter, 2),
            }
        rows.append(row)
    for path in (small, small + ".enc", small + ".kst"):
        os.unlink(path)
    return rows


def format_many(many: list[dict[str, Any]], startup: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "many files, one command each way (encrypt then decrypt, medians; ratio: "
        "kstream's time / the loop's in the same round):",
    ]
    for row in many:
        if "goal" in row:
            lines.append(
                f"  {row['verdict']:<4}  {row['ratio']:.3f}x  goal {row['goal']:<8}  "
                f"{row['set']}: kstream ({row['median_s']:.3f} s) vs "
                f"{row['baseline']}"
            )
        else:
            lines.append(f"        {row['median_s']:8.3f} s  {row['set']}: {row['label']}")
    lines.append("start-up (fresh processes, interleaved, medians):")
    for row in startup:
        if "goal" in row:
            lines.append(
                f"  {row['verdict']:<4}  {row['median_s'] * 1000:6.1f} ms  goal "
                f"{row['goal']:<9}  {row['label']} ({row['vs_python']:.1f}x python "
                "-c pass)"
            )
        else:
            lines.append(
                f"        {row['median_s'] * 1000:6.1f} ms                  {row['label']}"
            )
    if startup and editable_install():
        lines.append(
            "  (kstream is an editable install here: each start above includes "
            "setuptools' editable import hook, which 'pip install .' does not have)"
        )
    return lines
