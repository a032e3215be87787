"""What the terminal shows while kstream waits on the user or on scrypt: the prompt's
endings, and the status line of a slow key derivation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from screen import Console, screen

from kstream.keys.passphrase import SLOW_LOG2N


def test_ctrl_d_at_the_passphrase_prompt_says_the_prompt_was_closed(tmp_path: Path) -> None:
    (tmp_path / "p").write_bytes(b"data")
    console = Console("encrypt", "-p", "p", "c", cwd=tmp_path)
    console.read(1.5)
    assert b"kstream: enter passphrase: " in console.raw
    console.type(b"\x04")  # Ctrl-D, nothing typed
    assert console.finish() == 2
    assert screen(console.raw)[-1] == (
        "kstream: error: the passphrase prompt was closed (Ctrl-D) without an answer"
    )
    assert "empty" not in console.raw.decode()
    assert sorted(os.listdir(tmp_path)) == ["p"]


@pytest.mark.parametrize("command", ["encrypt", "decrypt"])
def test_a_slow_derivation_shows_a_line_that_is_cleared(tmp_path: Path, command: str) -> None:
    (tmp_path / "pw").write_text("correct horse\n")
    (tmp_path / "pw").chmod(0o600)
    (tmp_path / "p").write_bytes(b"data")
    if command == "decrypt":
        console = Console(
            "encrypt",
            "-q",
            "--passphrase-file",
            "pw",
            "--work-factor",
            SLOW_LOG2N,
            "p",
            "c",
            cwd=tmp_path,
        )
        assert console.finish() == 0
        args = ["decrypt", "-q", "--passphrase-file", "pw", "c", "d"]
    else:
        args = [
            "encrypt",
            "-q",
            "--passphrase-file",
            "pw",
            "--work-factor",
            str(SLOW_LOG2N),
            "p",
            "c",
        ]
    console = Console(*args, cwd=tmp_path)
    assert console.finish() == 0
    line = b"kstream: deriving the key from the passphrase (scrypt, 256 MiB)..."
    assert line in console.raw  # shown while scrypt ran
    assert screen(console.raw) == []  # and gone from the screen afterwards
    fast = Console(
        *[a if a != str(SLOW_LOG2N) else str(SLOW_LOG2N - 8) for a in args], "-f", cwd=tmp_path
    )
    assert fast.finish() == 0
    assert command == "decrypt" or b"deriving" not in fast.raw
