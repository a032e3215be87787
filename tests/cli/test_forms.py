"""The command forms age and gzip users expect, beside the old ones: ``-o OUT [IN]``,
no positional at all for stdin to stdout, and no ciphertext read from a terminal."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from clirun import KST, fails, kst

from kstream.format import MAGIC


def test_output_option_with_and_without_input(
    tmp_path: Path, keyfile: Path, plain: tuple[Path, bytes]
) -> None:
    kst("encrypt", "-q", "-k", keyfile, "-o", tmp_path / "c", plain[0])
    assert (tmp_path / "c").read_bytes().startswith(MAGIC)
    kst("decrypt", "-q", "-k", keyfile, "--output", tmp_path / "d", tmp_path / "c")
    assert (tmp_path / "d").read_bytes() == plain[1]
    kst("encrypt", "-q", "-k", keyfile, "-o", tmp_path / "c2", input=plain[1])  # stdin
    back = kst("decrypt", "-q", "-k", keyfile, "-o", "-", tmp_path / "c2").stdout
    assert back == plain[1]


def test_no_positional_is_stdin_to_stdout(keyfile: Path, plain: tuple[Path, bytes]) -> None:
    """``kstream encrypt -k K < in > out`` and ``tar c d | kstream encrypt -k K | ...``."""
    blob = kst("encrypt", "-q", "-k", keyfile, input=plain[1]).stdout
    assert blob.startswith(MAGIC)
    assert kst("decrypt", "-q", "-k", keyfile, input=blob).stdout == plain[1]
    tar = subprocess.run(
        f"tar c -C {plain[0].parent} {plain[0].name} | {' '.join(KST)} "
        f"encrypt -q -k {keyfile} | {' '.join(KST)} decrypt -q -k {keyfile} "
        "| tar t",
        shell=True,
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert tar.stdout.decode().split() == [plain[0].name]


def test_the_old_forms_still_work(tmp_path: Path, keyfile: Path, plain: tuple[Path, bytes]) -> None:
    kst("encrypt", "-q", "-k", keyfile, plain[0], tmp_path / "c")  # IN OUT
    blob = kst("encrypt", "-q", "-k", keyfile, "-", "-", input=plain[1]).stdout  # - -
    assert kst("decrypt", "-q", "-k", keyfile, "-", "-", input=blob).stdout == plain[1]
    kst("encrypt", "-q", "-k", keyfile, "--suffix", ".x", plain[0])  # FILE... --suffix
    assert plain[0].with_name(plain[0].name + ".x").read_bytes().startswith(MAGIC)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["-o", "OUT", "a", "b"], "-o/--output takes one input"),
        (["-o", "OUT", "--suffix", ".kst", "a"], "-o/--output names one output"),
        (["--suffix", ".kst"], "--suffix and --output-dir need the FILEs"),
        (["a", "b", "c"], "give IN and OUT, '-o OUT IN', or FILE... with --suffix"),
    ],
)
def test_forms_that_do_not_fit(keyfile: Path, args: list[str], match: str) -> None:
    fails("encrypt", "-k", keyfile, *args, code=2, match=match)


@pytest.mark.parametrize("args", [[], ["-"], ["-", "OUT"]], ids=["none", "dash", "dash-out"])
def test_ciphertext_is_not_read_from_a_terminal(
    tmp_path: Path, keyfile: Path, args: list[str]
) -> None:
    """As ``gzip -d`` refuses: typing cannot produce ciphertext, and it would wait."""
    work = tmp_path / "work"
    work.mkdir()
    leader, follower = os.openpty()
    try:
        proc = subprocess.run(
            [*KST, "decrypt", "-k", str(keyfile), *args],
            stdin=follower,
            capture_output=True,
            timeout=30,
            cwd=work,
        )
    finally:
        os.close(leader)
        os.close(follower)
    assert proc.returncode == 2
    assert proc.stderr.decode() == (
        "kstream: error: refusing to read ciphertext from a "
        "terminal; redirect stdin or give an input file\n"
    )
    assert os.listdir(work) == []
