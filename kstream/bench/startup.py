"""``kstream bench --files``, last part: start-up, as ratios to ``python -c pass``.

A short run is mostly start-up, and start-up is mostly the interpreter's, whose own time
moves by half between hours on a shared VM. So kstream's is stated as a ratio to
``python -c pass`` from the same venv, run in the same rounds (interleaved, the median of
the ratios paired round by round), beside ``openssl enc`` on the same small file.

Which install is measured matters. An editable install (``pip install -e``) loads
setuptools' import hook through a ``.pth`` file at every start, which a user's install does
not. From an editable install, start-up is therefore measured in a clean venv made for the
run: this interpreter, kstream's modules copied and compiled (as pip compiles them), the
console script that this install's pip wrote, and the dependencies reached through a path
file, which, unlike a site directory, runs none of their ``.pth`` files. Any other install is
measured as it is, and the report says which one it measured.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import kstream
from kstream.bench.commands import run_command
from kstream.bench.many import kstream_command
from kstream.bench.units import median, paired_ratios
from kstream.bench.workfiles import generate_file

#: What a command of this kind cannot do without: cryptography's AES-CTR and HKDF-SHA256
#: used once (OpenSSL's first use of an algorithm costs more than the next).
FLOOR = (
    "from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes\n"
    "from cryptography.hazmat.primitives.hashes import SHA256\n"
    "from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand\n"
    "key = HKDFExpand(SHA256(), 16, b'kstream').derive(bytes(16))\n"
    "Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor().update(bytes(4096))\n"
)


def editable_install() -> bool:
    """Whether kstream runs from an editable install (``pip install -e``): its import hook,
    loaded at every start by a ``.pth`` file, is in this process too."""
    return any(name.startswith("__editable__") and "kstream" in name for name in sys.modules)


def _quiet(argv: Sequence[str]) -> None:
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)


def clean_venv(directory: str) -> tuple[str, list[str]]:
    """Make the clean venv of the module docstring in ``directory``: its interpreter and
    its ``kstream`` command. Raises OSError or SubprocessError where it cannot."""
    script = kstream_command()
    if len(script) != 1:
        raise OSError("no kstream console script beside this interpreter")
    with open(script[0], encoding="utf-8") as f:
        body = f.read().partition("\n")[2]  # the script without its #! line
    _quiet([sys.executable, "-m", "venv", "--without-pip", directory])
    python = os.path.join(directory, "bin", "python")
    purelib = [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
    packages = subprocess.run(purelib, check=True, capture_output=True, text=True).stdout.strip()
    target = os.path.join(packages, "kstream")
    source = os.path.dirname(kstream.__file__)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    with open(os.path.join(packages, "kstream-bench-dependencies.pth"), "w") as f:
        f.writelines(path + "\n" for path in site.getsitepackages())
    command = os.path.join(directory, "bin", "kstream")
    with open(command, "w", encoding="utf-8") as f:
        f.write(f"#!{python}\n{body}")
    os.chmod(command, 0o700)  # run by this user only
    _quiet([python, "-m", "compileall", "-q", target])
    return python, [command]


def _install(directory: str) -> tuple[str, list[str], str]:
    """(interpreter, kstream command, what they are) for the start-up rows."""
    if not editable_install():
        return sys.executable, kstream_command(), f"this install ({sys.prefix})"
    try:
        python, command = clean_venv(directory)
    except (OSError, subprocess.SubprocessError) as exc:
        return (
            sys.executable,
            kstream_command(),
            f"this editable install ({sys.prefix}), with setuptools' import hook in every "
            f"start (a clean venv could not be made: {exc})",
        )
    return python, command, "a clean venv made for this run from this editable install"


def _script_notes(command: Sequence[str]) -> list[str]:
    """What the reader should know about the console script measured."""
    if len(command) != 1:
        return [f"no console script: measured '{' '.join(command)}'"]
    with open(command[0], encoding="utf-8") as f:
        if "import re" in f.read().splitlines():
            return [
                "this console script imports re before kstream, as older pips write "
                "them (newer ones do not): that import is in the --version row"
            ]
    return []


def run_startup(
    workdir: str, key_path: str, key_hex: str, iv_hex: str, bits: int, *, repeat: int
) -> dict[str, Any]:
    """``kstream --version`` and one 4 KiB file encrypted, fresh processes, as ratios to
    ``python -c pass`` from the same install, with ``openssl enc`` on the same file.

    ``PYTHONDONTWRITEBYTECODE`` is lifted for these runs: an installed kstream has its
    bytecode compiled at install time, but with the variable set an install whose bytecode
    is missing would compile every module on every start, which no user pays.
    """
    small = os.path.join(workdir, "small")
    venv = os.path.join(workdir, "startup-venv")
    generate_file(small, 4096)
    python, kst, install = _install(venv)
    openssl = ["openssl", "enc", f"-aes-{bits}-ctr", "-K", key_hex, "-iv", iv_hex]
    cases = [
        ("python", "python -c pass", [python, "-c", "pass"]),
        ("version", "kstream --version", [*kst, "--version"]),
        (
            "floor",
            "python -c: AES-CTR and HKDF from cryptography on 4 KiB "
            "(what any such command pays, for reference)",
            [python, "-c", FLOOR],
        ),
        (
            "openssl-small",
            "openssl enc, one 4 KiB file (for reference)",
            [*openssl, "-in", small, "-out", small + ".enc"],
        ),
        (
            "one-small",
            "kstream encrypt, one 4 KiB file",
            [*kst, "encrypt", "-q", "--no-progress", "-f", "-k", key_path, small, small + ".kst"],
        ),
    ]
    saved = os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    times: dict[str, list[float]] = {case_id: [] for case_id, _, _ in cases}
    try:
        for _, _, argv in cases:
            run_command(argv)  # warm the page cache
        for _ in range(max(2 * repeat, 15)):
            for case_id, _, argv in cases:
                times[case_id].append(run_command(argv).seconds)
        notes = _script_notes(kst)
    finally:
        if saved is not None:
            os.environ["PYTHONDONTWRITEBYTECODE"] = saved
        shutil.rmtree(venv, ignore_errors=True)
        for path in (small, small + ".enc", small + ".kst"):
            if os.path.exists(path):
                os.unlink(path)
    rows = []
    for case_id, label, _ in cases:
        row: dict[str, Any] = {
            "id": case_id,
            "label": label,
            "median_s": round(median(times[case_id]), 4),
        }
        if case_id != "python":
            ratios = paired_ratios(times[case_id], times["python"])
            row |= {
                "ratio": round(median(ratios), 3),
                "ratio_min": round(min(ratios), 3),
                "ratio_max": round(max(ratios), 3),
            }
        rows.append(row)
    return {"install": install, "notes": notes, "rows": rows}


def format_startup(startup: dict[str, Any]) -> list[str]:
    lines = [
        "start-up (fresh processes, interleaved; medians; ratio: the time / python -c "
        "pass's in the same round):",
        f"  measured in {startup['install']}",
    ]
    for row in startup["rows"]:
        ratio = ""
        if "ratio" in row:
            ratio = f"{row['ratio']:.2f}x ({row['ratio_min']:.2f}-{row['ratio_max']:.2f})"
        lines.append(f"  {row['median_s'] * 1000:6.1f} ms  {ratio:<18}  {row['label']}")
    lines += [f"  ({note})" for note in startup["notes"]]
    return lines
