"""Questions asked on the terminal: a passphrase (echo off) and a yes/no before something
that cannot be undone. Ctrl-C at either ends the run as an interruption (exit 130)."""

from __future__ import annotations

import os
import sys

from kstream.cli import tui
from kstream.errors import Interrupted, UsageError

_MAX_PASSPHRASE = 64 << 10
NO_TERMINAL = (
    "no terminal to ask for the passphrase on; give it with --passphrase-fd N "
    "or --passphrase-file PATH"
)


def ask_passphrase(*, confirm: bool) -> bytearray:
    """Ask for a passphrase on the controlling terminal with echo off; twice if ``confirm``
    (encryption: a typo would lock the data away). An empty or mismatched answer is a usage
    error. Ctrl-C at the prompt ends the run as an interruption (exit 130)."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise UsageError(NO_TERMINAL) from exc
    tui.clear_bar()  # the prompt goes to the same screen: not onto the bar's line
    try:
        first = _ask(fd, f"{tui.PROG}: enter passphrase: ")
        if not first:
            raise UsageError("the passphrase is empty; refusing to use it")
        if confirm:
            second = _ask(fd, f"{tui.PROG}: confirm passphrase: ")
            same = second == first
            _wipe(second)
            if not same:
                _wipe(first)
                raise UsageError("the passphrases do not match; nothing was encrypted")
        return first
    finally:
        os.close(fd)


def _wipe(buf: bytearray) -> None:
    for i in range(len(buf)):
        buf[i] = 0


def _ask(fd: int, prompt: str) -> bytearray:
    """One line from terminal ``fd`` with echo off, its newline removed.

    SIGINT raises at once while waiting here, also inside the event loop (whose own handler
    would only cancel the task and leave this read waiting); the terminal's echo setting is
    restored on every way out.
    """
    import signal  # here: only a passphrase prompt needs these
    import termios
    import threading

    old = termios.tcgetattr(fd)
    new = list(old)
    new[3] &= ~termios.ECHO
    main = threading.current_thread() is threading.main_thread()
    handler = signal.signal(signal.SIGINT, signal.default_int_handler) if main else None
    line = bytearray()
    try:
        # Echo off before the prompt shows: TCSAFLUSH drops what was typed before it.
        termios.tcsetattr(fd, termios.TCSAFLUSH, new)
        os.write(fd, prompt.encode())
        while b"\n" not in line and len(line) <= _MAX_PASSPHRASE:
            chunk = os.read(fd, 1024)
            if not chunk:  # Ctrl-D: the answer was never given, not given empty
                _wipe(line)
                raise UsageError("the passphrase prompt was closed (Ctrl-D) without an answer")
            line += chunk
    except KeyboardInterrupt:
        _wipe(line)
        raise Interrupted("interrupted at the passphrase prompt") from None
    finally:
        termios.tcsetattr(fd, termios.TCSAFLUSH, old)
        os.write(fd, b"\n")
        if main:
            signal.signal(signal.SIGINT, handler)
    end = line.find(b"\n")
    if end >= 0:
        del line[end:]
    return line


def confirm(question: str, *, refusal: str) -> bool:
    """Ask ``question [y/N]`` before something that cannot be undone; True for y or yes.

    Asked on stderr and answered on stdin, and only when both are a terminal: otherwise no
    person is there to answer, and the run is a usage error saying ``refusal`` (which names
    the option that answers in advance, such as ``--yes``). Ctrl-C at the question ends the
    run as an interruption (exit 130), Ctrl-D answers no.
    """
    if not (os.isatty(0) and os.isatty(2)):
        raise UsageError(refusal)
    try:
        sys.stderr.write(f"{tui.PROG}: {question} [y/N] ")
        sys.stderr.flush()
        answer = sys.stdin.readline()
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        raise Interrupted("interrupted at the question; nothing was changed") from None
    if not answer.endswith("\n"):  # Ctrl-D: end the prompt's line
        sys.stderr.write("\n")
    return answer.strip().lower() in ("y", "yes")
