"""Running a command with its stderr (and perhaps stdout) on a real pseudo-terminal, and
what a person would see: the bytes the terminal got, and the screen they leave, as a
terminal emulator (pyte) draws them. Carriage returns, erased lines and wrapped lines are
what decide whether a progress bar left something behind, so the screen is judged, not
the bytes."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyte
import pytest
from clirun import KST

COLUMNS, ROWS = 120, 40


class Keyboard:
    """The person's side of a pseudo-terminal ``master``: waiting for text to appear on it
    (everything shown so far is in ``screen``), and typing."""

    master: int
    screen: bytes

    def expect(self, text: bytes, timeout: float = 60) -> None:
        """Read the terminal until ``text`` has appeared on it."""
        end = time.monotonic() + timeout
        while text not in self.screen:
            ready, _, _ = select.select([self.master], [], [], max(0, end - time.monotonic()))
            if not ready:
                raise AssertionError(f"no {text!r} on the terminal, only {self.screen!r}")
            self.screen += os.read(self.master, 4096)

    def type(self, data: bytes) -> None:
        os.write(self.master, data)


@dataclass
class Seen:
    """What the terminal received, and the screen's non-empty lines at the end."""

    returncode: int
    raw: bytes
    lines: list[str]

    def after(self, marker: bytes) -> bytes:
        """The bytes the terminal got after the first ``marker``."""
        at = self.raw.find(marker)
        assert at >= 0, self.raw[-400:]
        return self.raw[at + len(marker) :]


def screen(raw: bytes, columns: int = COLUMNS, rows: int = ROWS) -> list[str]:
    """The non-empty lines that ``raw`` leaves on a ``columns`` x ``rows`` terminal."""
    term = pyte.Screen(columns, rows)
    pyte.ByteStream(term).feed(raw)
    return [line.rstrip() for line in term.display if line.strip()]


def read_for(fd: int, seconds: float) -> bytes:
    """What arrives on the pty ``fd`` in the next ``seconds``, less once nothing more can
    (every writer of its other side has closed it)."""
    end = time.monotonic() + seconds
    got = b""
    while (left := end - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        try:
            chunk = os.read(fd, 1 << 16)
        except OSError:  # EIO: every writer has closed the other side
            break
        if not chunk:
            break
        got += chunk
    return got


class Terminal:
    """A pseudo-terminal of a fixed size, read in the background of a running command."""

    def __init__(self, columns: int = COLUMNS, rows: int = ROWS) -> None:
        self.columns, self.rows = columns, rows
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.raw = b""

    def read(self, seconds: float) -> bytes:
        """What the terminal gets in the next ``seconds`` (the command's output so far)."""
        got = read_for(self.master, seconds)
        self.raw += got
        return got

    def close(self) -> None:
        os.close(self.master)


def run(
    argv: Sequence[str],
    *,
    stdout_tty: bool = False,
    stdin: int | None = None,
    feed: Callable[[subprocess.Popen[bytes], Terminal], None] | None = None,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    timeout: float = 120,
) -> Seen:
    """Run ``argv`` with stderr (and stdout if ``stdout_tty``) on a new terminal. ``feed``,
    if given, is called with the running process (its stdin a pipe) and the terminal, to
    write input at its own pace and look at the screen meanwhile."""
    term = Terminal()
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if feed is not None else stdin,
            stdout=term.slave if stdout_tty else subprocess.DEVNULL,
            stderr=term.slave,
            env=env,
            cwd=cwd,
        )
        os.close(term.slave)
        if feed is not None:
            feed(proc, term)
            assert proc.stdin is not None
            proc.stdin.close()
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            term.read(0.2)
        term.read(0.5)
        proc.wait(timeout=5)
        return Seen(proc.returncode, term.raw, screen(term.raw, term.columns, term.rows))
    finally:
        term.close()


class Console:
    """``kstream ARGS`` with a new pty as its controlling terminal and its stdio."""

    def __init__(self, *args: object, cwd: Path) -> None:
        self.master, slave = os.openpty()
        name = os.ttyname(slave)

        def take_terminal() -> None:  # after setsid: the first tty opened becomes ours
            os.close(os.open(name, os.O_RDWR))

        self.proc = subprocess.Popen(
            [*KST, *map(str, args)],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=take_terminal,
        )
        os.close(slave)
        self.raw = b""

    def read(self, seconds: float) -> None:
        self.raw += read_for(self.master, seconds)

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def finish(self, wait: float = 30) -> int:
        """Wait for the command to exit by itself; its status."""
        end = time.monotonic() + wait
        while self.proc.poll() is None and time.monotonic() < end:
            self.read(0.05)
        self.read(0.2)
        if self.proc.poll() is None:
            self.proc.kill()
            pytest.fail(f"still running after {wait} s; screen: {self.raw!r}")
        os.close(self.master)
        return self.proc.returncode

    def ctrl_c(self, wait: float = 10) -> float:
        """Type Ctrl-C once; the seconds until the command exited (it must, by ``wait``)."""
        start = time.monotonic()
        os.write(self.master, b"\x03")
        while self.proc.poll() is None and time.monotonic() - start < wait:
            self.read(0.05)
        self.read(0.2)
        took = time.monotonic() - start
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
            pytest.fail(f"still running {wait} s after one Ctrl-C; screen: {self.raw!r}")
        os.close(self.master)
        return took
