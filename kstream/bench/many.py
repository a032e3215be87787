"""``kstream bench --files``, second part: many small or mid-sized files.

A backup script that runs one command per file pays the interpreter's start-up per file, so
what counts is one ``kstream`` command per direction for the whole set against a shell loop
that runs ``openssl enc`` (or ``age``, where installed) once per file, timed side by side in
interleaved rounds like the rest of ``--files``.
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
from kstream.bench.units import MIB, format_size, median, paired_ratios
from kstream.bench.workfiles import generate_file, same_content

#: (files, size of each): many small files, where start-up per file dominates a loop, and
#: fewer larger ones, where the work does.
SETS = ((1000, 4096), (100, 10 * MIB))


def kstream_command() -> list[str]:
    """The console script beside this interpreter (what a user runs), else ``python -m``."""
    script = os.path.join(os.path.dirname(sys.executable), "kstream")
    return [script] if os.access(script, os.X_OK) else [sys.executable, "-m", "kstream"]


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
    sets: Sequence[tuple[int, int]] = SETS,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Each set: generate it, run every way in interleaved rounds, check the outputs once."""
    rows: list[dict[str, Any]] = []
    for count, size in sets:
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
        where = {"set": f"{count} files of {format_size(size)}", "files": count, "file_size": size}
        for way in ways:
            rows.append(
                {**where, "id": way.id, "label": way.label, "median_s": round(median(way.times), 3)}
            )
        kstream = next(way for way in ways if way.id == "kstream")
        for loop in (way for way in ways if way is not kstream):
            ratios = paired_ratios(kstream.times, loop.times)
            rows.append(
                {
                    **where,
                    "id": "kstream",
                    "vs": loop.id,
                    "baseline": loop.label,
                    "ratio": round(median(ratios), 3),
                    "ratio_min": round(min(ratios), 3),
                    "ratio_max": round(max(ratios), 3),
                }
            )
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


def format_many(many: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "many files, one command each way (encrypt then decrypt; medians; ratio: "
        "kstream's time / the loop's in the same round):",
    ]
    for row in many:
        if "vs" in row:
            lines.append(
                f"  {row['ratio']:6.3f}x  {row['set']}: kstream vs {row['baseline']} "
                f"(rounds {row['ratio_min']:.2f}-{row['ratio_max']:.2f})"
            )
        else:
            lines.append(f"  {row['median_s']:6.3f} s  {row['set']}: {row['label']}")
    return lines
