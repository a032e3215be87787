"""Every rule for what ``kstream`` shows on the terminal, in one place.

Scripts parse kstream's stderr and rely on its exit status, so how a message looks must not
depend on which command produced it. The command modules therefore never write to stderr or
ask whether a stream is a terminal themselves; they call this module. Their results (a
table, JSON, a serial number) still go to stdout with ``print``, since that is data, not
presentation.

The rules:

* everything kstream says goes to stderr as one line ``kstream: KIND: message``, with KIND
  ``error``, ``warning`` or ``notice`` and a lowercase message;
* an error is one line; a traceback is added only with ``--debug``, and an error that is
  not a :class:`~kstream.errors.KstreamError` (a bug) is marked ``unexpected``;
* ``-q/--quiet`` silences notices; warnings are shown regardless, because they tell the
  user that something less safe than asked for is happening, except advisories about the
  user's own setup that ``-q`` is the documented way to silence (a key file readable by
  others, as gpg lets its permission warning be turned off);
* the progress bar appears only when stderr is a terminal, stdout (if it carries the data)
  is not, and the input is not known to be small, unless ``--progress`` or
  ``--no-progress`` says otherwise (see :func:`_bar`); while it is on screen every message
  goes through it, and when the run ends it is removed;
* ciphertext and keys are never written to a terminal, and a key is never read from one;
* a passphrase is asked for on the controlling terminal (``/dev/tty``, never stdin, which
  may be the data), with echo off, as ``kstream: enter passphrase:``; without a terminal
  that is a usage error naming ``--passphrase-fd`` and ``--passphrase-file``;
* the exit status comes from the exception's class (:data:`EXIT_CODES` is the table that
  ``--help`` shows), and signals get the shell's ``128 + N`` convention.
"""

from __future__ import annotations

import os
import sys
from _thread import RLock  # threading's own RLock, without importing threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from kstream.errors import Interrupted, KstreamError, UsageError

Progress = Callable[[int], None]

PROG = "kstream"

EXIT_CODES = """\
exit status:
  0    success
  1    cryptographic or data error (not a kstream file, damaged header, failed
       check)
  2    usage error (bad arguments, unusable key, refused output or terminal)
  3    the requested backend is not available here
  4    input/output error (cannot read input, disk full, cannot write output)
  70   internal error (a bug: please report it; --debug shows the traceback)
  130  interrupted (SIGINT); 143 terminated (SIGTERM); 141 output pipe closed"""

EXIT_USAGE = 2
#: An exception that is not a :class:`KstreamError`: a bug (``EX_SOFTWARE`` of sysexits.h).
EXIT_SOFTWARE = 70
EXIT_SIGPIPE = 141
EXIT_SIGTERM = 143

#: What an interrupted run says, before what it cleaned up (:func:`interrupted`).
INTERRUPTED = "interrupted"
TERMINATED = "terminated"

Notify = Callable[[str], None]


# --------------------------------------------------------------------------- messages


#: The progress bar on screen, if any: a message must not land on the bar's line.
_bar_shown: _Bar | None = None
#: Held while anything is written to the terminal (a message, or the bar drawn or removed),
#: so that a message from another thread cannot cut into a bar being drawn.
_screen = RLock()


def say(kind: str, message: str) -> None:
    """Write ``kstream: KIND: message`` to stderr at once (stderr may be a pipe); a progress
    bar on screen is cleared first and drawn again below the message."""
    global _ctrl_c
    with _screen:
        bar = _bar_shown
        if bar is not None:
            bar.clear()
        elif _ctrl_c and os.isatty(2):  # not after the terminal's "^C" on the same line
            sys.stderr.write("\n")
        _ctrl_c = False
        sys.stderr.write(f"{PROG}: {kind}: {message}\n")
        sys.stderr.flush()
        if bar is not None:
            bar.refresh()


def error(message: str) -> None:
    say("error", message)


def warning(message: str, *, quiet: bool = False) -> None:
    """Shown even with ``-q`` (the user should learn that something is less safe), unless
    the caller passes ``quiet`` for an advisory about the user's own setup."""
    if not quiet:
        say("warning", message)


def notice(message: str, *, quiet: bool) -> None:
    if not quiet:
        say("notice", message)


def notifier(quiet: bool) -> Notify:
    """The ``notify`` callback for the API: its messages are notices."""

    def notify(message: str) -> None:
        notice(message, quiet=quiet)

    return notify


def terminal_columns() -> int:
    """What ``shutil.get_terminal_size().columns`` says, without importing shutil: $COLUMNS,
    else the width of the terminal on stdout, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns > 0:
        return columns
    try:
        columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        columns = 0
    return columns or 80


# --------------------------------------------------------------------------- terminals


def refuse_terminal(fd: int, message: str) -> None:
    """Raise a usage error if ``fd`` is a terminal: ciphertext and keys do not belong there."""
    if os.isatty(fd):
        raise UsageError(message)


#: With no ``--progress``, an input whose size is known to be below this gets no bar: it is
#: done before a bar could say anything (the bar would flash for a moment and vanish).
SMALL_INPUT = 8 << 20
#: With no ``--progress``, the bar is drawn only once data has flowed for this many seconds:
#: a pipe of unknown size that ends sooner gets no bar either, and a bar never shows the
#: ``0.00B`` of an input that has not started (its first drawing shows real bytes).
BAR_DELAY = 0.5


class _Bar:
    """A tqdm byte counter on stderr that is created at the first data, not before (a
    passphrase prompt may come first), and can be cleared for a message line.

    Every drawing happens under :data:`_screen`, which is also tqdm's lock (never its default,
    which creates a multiprocessing semaphore), and tqdm's monitor thread is switched off:
    it would redraw the bar from a thread of its own, between a message's clearing of the
    bar and the message. ``miniters=1`` keeps tqdm from skipping updates after a burst (with
    the monitor off, nothing else would undo that): after a stall the next data is drawn at
    once.
    """

    def __init__(self, total: int | None, delay: float) -> None:
        self.total = total
        self.delay = delay
        self.postfix = ""
        self._bar: Any = None

    def update(self, n: int) -> None:
        with _screen:
            if self._bar is None:
                if n <= 0:
                    return
                from tqdm import tqdm  # only when a bar is drawn: it costs import time

                tqdm.monitor_interval = 0
                # tqdm's default lock adds a multiprocessing RLock (a POSIX semaphore, which
                # 3.14's resource_tracker reports as leaked at exit); this process draws from
                # threads only, all under _screen: that is the lock tqdm needs.
                tqdm.set_lock(_screen)
                # Decimal units (1 MB = 10^6 bytes), as in the many-files summary line and
                # in kstream bench: the bar's total and the summary's agree.
                self._bar = tqdm(
                    total=self.total,
                    initial=n,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1000,
                    file=sys.stderr,
                    leave=False,
                    dynamic_ncols=True,
                    miniters=1,
                    delay=self.delay,
                    postfix=self.postfix or None,
                )
                return
            self._bar.update(n)

    def set_postfix(self, text: str) -> None:
        with _screen:
            self.postfix = text
            if self._bar is not None:
                self._bar.set_postfix_str(text, refresh=self._drawn())

    def _drawn(self) -> bool:
        """Whether the bar is on screen: tqdm's own test, with ``delay``, in ``close``."""
        bar = self._bar
        return bar is not None and bar.last_print_t >= bar.start_t + bar.delay

    def clear(self) -> None:
        with _screen:
            if self._drawn():
                self._bar.clear()

    def refresh(self) -> None:
        with _screen:
            if self._drawn():
                self._bar.refresh()

    def close(self) -> None:
        with _screen:
            if self._bar is not None:
                self._bar.close()


@contextmanager
def _bar(wanted: bool | None, total: int | None, *, stdout_data: bool) -> Iterator[_Bar | None]:
    """A byte counter on stderr, or ``None`` when there is to be no bar.

    ``wanted`` is ``--progress``/``--no-progress``; ``--progress`` always gets a bar, drawn
    at once. With neither (``None``) the bar is for a person watching a long run: only when
    stderr is a terminal (never into a log file), not when ``stdout_data`` (the output goes
    to stdout) and stdout is a terminal too (the bar would be glued into the plaintext), not
    for an input known to be under :data:`SMALL_INPUT`, and only after :data:`BAR_DELAY`.
    The bar is removed when the block ends, so a line after it starts on a clean line and
    nothing stale stays on screen.
    """
    global _bar_shown
    if wanted is None:
        wanted = (
            sys.stderr.isatty()
            and not (stdout_data and sys.stdout.isatty())
            and (total is None or total >= SMALL_INPUT)
        )
        delay = BAR_DELAY
    else:
        delay = 0.0
    if not wanted:
        yield None
        return
    bar = _Bar(total, delay)
    _bar_shown = bar
    try:
        yield bar
    finally:
        with _screen:
            _bar_shown = None
            bar.close()


@contextmanager
def progress_bar(
    wanted: bool | None, total: int | None, *, stdout_data: bool
) -> Iterator[Progress | None]:
    """A byte counter (see :func:`_bar`): the callback to report bytes, or ``None``."""
    with _bar(wanted, total, stdout_data=stdout_data) as bar:
        yield None if bar is None else bar.update


@contextmanager
def files_bar(
    wanted: bool | None, total: int, files: int
) -> Iterator[tuple[Progress | None, Callable[[], None] | None]]:
    """A byte counter that also counts files (``3/10 files``) for many-files runs: the
    callbacks for bytes and for a finished file, or ``(None, None)`` without a bar."""
    with _bar(wanted, total, stdout_data=False) as bar:
        if bar is None:
            yield None, None
            return
        count = 0

        def file_done() -> None:
            nonlocal count
            count += 1
            bar.set_postfix(f"{count}/{files} files")

        bar.set_postfix(f"0/{files} files")
        yield bar.update, file_done


@contextmanager
def status_line(message: str) -> Iterator[None]:
    """``kstream: message...`` on the terminal while the block runs, then gone: for work
    that takes a while before any progress can be counted (a key derivation)."""
    with _screen:
        clear_bar()
        sys.stderr.write(f"{PROG}: {message}...")
        sys.stderr.flush()
    try:
        yield
    finally:
        with _screen:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            if _bar_shown is not None:
                _bar_shown.refresh()


def clear_bar() -> None:
    """Take a progress bar off the screen before a prompt (it is drawn again later)."""
    if _bar_shown is not None:
        _bar_shown.clear()


# --------------------------------------------------------------------------- endings


def interrupted(*, terminated: bool = False) -> Interrupted:
    """The error for Ctrl-C (exit 130) or SIGTERM (exit 143), saying which partial output
    files were removed (by then they are), and nothing of the kind where there was none."""
    from kstream.atomic import partials_removed

    message = TERMINATED if terminated else INTERRUPTED
    if len(partials_removed) == 1:
        message += f"; the partial output '{partials_removed[0]}' was removed"
    elif partials_removed:
        message += f"; {len(partials_removed)} partial output files were removed"
    err = Interrupted(message)
    if terminated:
        err.exit_code = EXIT_SIGTERM
    else:
        ctrl_c_seen()
    return err


#: Whether the terminal has echoed ``^C`` where the cursor was, with no new line since.
_ctrl_c = False


def ctrl_c_seen() -> None:
    """Ctrl-C was pressed: the next line kstream writes starts on a line of its own."""
    global _ctrl_c
    _ctrl_c = True


def silence_stdout() -> None:
    """After EPIPE on stdout, point fd 1 at /dev/null so no later flush can complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    except OSError:
        pass


def report(exc: Exception, *, debug: bool) -> int:
    """Show ``exc`` as kstream's one error line (no line for a closed stdout pipe), and
    return the exit status for it. Call it from an ``except`` block, for ``--debug``."""
    if isinstance(exc, BrokenPipeError):
        # The reader went away (``| head``): as quiet as a process killed by SIGPIPE.
        silence_stdout()
        return EXIT_SIGPIPE
    if debug:
        import traceback  # only here: its imports cost more than a small file's encryption

        traceback.print_exc()
    if isinstance(exc, KstreamError):
        error(str(exc))
        return exc.exit_code
    # Not a user mistake: a bug or an unexpected OS condition. Still one line unless
    # --debug, and never key material (keys are not part of any exception text).
    error(f"unexpected {type(exc).__name__}: {exc}; rerun with --debug and report this")
    return EXIT_SOFTWARE


def flush(code: int) -> int:
    """Flush stdout and stderr before the process exits; a reader that closed stdout
    early turns a success into the SIGPIPE status."""
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        silence_stdout()
        code = code or EXIT_SIGPIPE
    sys.stderr.flush()
    return code
