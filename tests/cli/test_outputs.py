"""The overwrite rule (kstream/cli/outputs.py, docs/cli.md "What to expect"): a glob of two files,
read as IN OUT, never replaces the second file, with or without --force."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from clirun import KST

from kstream.format import MAGIC


def _in(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``kstream ARGS`` run in ``folder``, as a shell would after expanding a glob there."""
    return subprocess.run([*KST, *args], cwd=folder, capture_output=True, text=True, timeout=60)


@pytest.fixture
def folder(tmp_path: Path, keyfile: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "a.txt").write_bytes(b"alpha " * 1000)
    (work / "b.txt").write_bytes(b"bravo " * 1000)
    return work


@pytest.mark.parametrize("force", [[], ["-f"]], ids=["no-force", "force"])
@pytest.mark.parametrize("command", ["encrypt", "decrypt"])
def test_a_two_file_glob_replaces_neither(
    folder: Path, keyfile: Path, command: str, force: list[str]
) -> None:
    """``kstream encrypt [-f] -k K *.txt`` and ``kstream decrypt [-f] -k K *.kst`` in a
    folder of two such files: read as IN OUT, and refused."""
    if command == "decrypt":
        assert (
            _in(
                folder, "encrypt", "-q", "-k", str(keyfile), "--suffix", ".kst", "a.txt", "b.txt"
            ).returncode
            == 0
        )
        for name in ("a.txt", "b.txt"):
            (folder / name).unlink()
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    glob = sorted(before)
    assert len(glob) == 2
    proc = _in(folder, command, *force, "-k", str(keyfile), *glob)
    assert proc.returncode == 2
    what = "is not" if command == "encrypt" else "is"
    assert proc.stderr == (
        f"kstream: error: output '{glob[1]}' exists and {what} kstream ciphertext: {command} "
        "does not replace it, even with --force (it may be one of your inputs); for several "
        "files give --suffix or --output-dir, or remove it first\n"
    )
    assert "use --force" not in proc.stderr
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_overwriting_that_is_plausibly_meant_still_works(folder: Path, keyfile: Path) -> None:
    """New ciphertext over old, new plaintext over old: --force is suggested, and works."""
    assert _in(folder, "encrypt", "-q", "-k", str(keyfile), "a.txt", "a.kst").returncode == 0
    old = (folder / "a.kst").read_bytes()
    proc = _in(folder, "encrypt", "-k", str(keyfile), "a.txt", "a.kst")
    assert proc.returncode == 2 and "already exists; use --force to overwrite it" in proc.stderr
    assert _in(folder, "encrypt", "-q", "-f", "-k", str(keyfile), "a.txt", "a.kst").returncode == 0
    assert (folder / "a.kst").read_bytes() != old  # a fresh IV: new ciphertext
    (folder / "out.txt").write_bytes(b"an older decryption")
    proc = _in(folder, "decrypt", "-k", str(keyfile), "a.kst", "out.txt")
    assert proc.returncode == 2 and "use --force" in proc.stderr
    assert (
        _in(folder, "decrypt", "-q", "-f", "-k", str(keyfile), "a.kst", "out.txt").returncode == 0
    )
    assert (folder / "out.txt").read_bytes() == (folder / "a.txt").read_bytes()


def test_many_files_mode_applies_the_rule_per_file(folder: Path, keyfile: Path) -> None:
    (folder / "a.txt.kst").write_bytes(b"not ciphertext, perhaps precious")
    proc = _in(folder, "encrypt", "-f", "-k", str(keyfile), "--suffix", ".kst", "a.txt", "b.txt")
    assert proc.returncode == 2
    assert "a.txt: output 'a.txt.kst' exists and is not kstream ciphertext" in proc.stderr
    assert (folder / "a.txt.kst").read_bytes() == b"not ciphertext, perhaps precious"
    assert (folder / "b.txt.kst").read_bytes().startswith(MAGIC)


def test_raw_mode_and_own_descriptors_are_outside_the_rule(folder: Path, keyfile: Path) -> None:
    (folder / "raw.bin").write_bytes(b"old raw output")
    assert (
        _in(
            folder,
            "encrypt",
            "-q",
            "-f",
            "-k",
            str(keyfile),
            "--raw",
            "--iv",
            "00" * 16,
            "a.txt",
            "raw.bin",
        ).returncode
        == 0
    )
    assert os.path.getsize(folder / "raw.bin") == 6000
    with open(folder / "via-stdout", "wb") as out:  # the shell's `> via-stdout`
        proc = subprocess.run(
            [*KST, "encrypt", "-q", "-k", str(keyfile), "a.txt", "/dev/stdout"],
            cwd=folder,
            stdout=out,
            timeout=60,
        )
    assert proc.returncode == 0
    assert (folder / "via-stdout").read_bytes().startswith(MAGIC)
