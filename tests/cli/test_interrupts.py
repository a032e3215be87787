"""One Ctrl-C stops every run at once, and what it says matches what is on disk.

Each run has a fresh pty as its controlling terminal (stdin, stdout and stderr on it, as in
a shell), and Ctrl-C is typed there, so the terminal's line discipline sends SIGINT and
echoes ``^C`` exactly as for a person.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from screen import Console, screen

from kstream.format import MAGIC


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "work").mkdir()
    return tmp_path / "work"


def test_ctrl_c_while_a_fifo_input_has_no_writer(work: Path, keyfile: Path) -> None:
    os.mkfifo(work / "in")
    console = Console("encrypt", "-k", keyfile, "in", "out", cwd=work)
    console.read(1.5)  # blocked opening the FIFO
    assert console.ctrl_c() < 5
    assert console.proc.returncode == 130
    assert screen(console.raw)[-2:] == ["^C", "kstream: error: interrupted"]
    assert sorted(os.listdir(work)) == ["in"]


def test_ctrl_c_while_reading_the_terminal(work: Path, keyfile: Path) -> None:
    console = Console("encrypt", "-q", "-k", keyfile, "-", "out", cwd=work)
    console.read(1.5)  # waiting for typing
    assert console.ctrl_c() < 5
    assert console.proc.returncode == 130
    assert screen(console.raw)[-2:] == [
        "^C",
        "kstream: error: interrupted; the partial output 'out' was removed",
    ]
    assert os.listdir(work) == []


def test_many_files_summary_after_ctrl_c_matches_the_disk(work: Path, keyfile: Path) -> None:
    for name in ("a", "b"):
        (work / name).write_bytes(os.urandom(50_000))
    os.mkfifo(work / "c")
    (work / "d").write_bytes(b"never started")
    console = Console(
        "encrypt", "-j", 1, "-k", keyfile, "--suffix", ".kst", "a", "b", "c", "d", cwd=work
    )
    console.read(2)  # a and b done, blocked opening the FIFO c
    assert console.ctrl_c() < 5
    assert console.proc.returncode == 130
    lines = screen(console.raw)
    assert lines[-3] == "^C"
    assert lines[-2].startswith("kstream: notice: 4 files: 2 done, 0 failed, 2 not done, ")
    assert lines[-1] == "kstream: error: interrupted"
    done = sorted(n for n in os.listdir(work) if n.endswith(".kst"))
    assert done == ["a.kst", "b.kst"]
    assert all((work / n).read_bytes().startswith(MAGIC) for n in done)
