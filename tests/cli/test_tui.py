"""What kstream shows on the terminal (kstream.cli.tui): one-line errors, tracebacks only
with --debug, notices and -q, warnings, the progress bar, terminals refused, exit codes."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import screen
from clirun import KST, fails, kst

from kstream.cli import tui
from kstream.errors import BackendUnavailable, IOFailure, UsageError

# --------------------------------------------------------------------------- the rules


def test_an_error_is_one_line_and_its_class_gives_the_status(
    capsys: pytest.CaptureFixture[str],
) -> None:
    try:
        raise BackendUnavailable("the kernel backend is not available: no AF_ALG")
    except BackendUnavailable as exc:
        code = tui.report(exc, debug=False)
    assert code == 3
    assert capsys.readouterr() == (
        "",
        "kstream: error: the kernel backend is not available: no AF_ALG\n",
    )


def test_debug_adds_the_traceback_before_the_line(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        raise IOFailure("cannot write output 'x': disk full")
    except IOFailure as exc:
        assert tui.report(exc, debug=True) == 4
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):\n")
    assert err.endswith("\nkstream: error: cannot write output 'x': disk full\n")


def test_a_bug_is_one_line_too_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        {"present": 1}["missing"]
    except KeyError as exc:
        assert tui.report(exc, debug=False) == tui.EXIT_SOFTWARE == 70
    assert capsys.readouterr().err == (
        "kstream: error: unexpected KeyError: 'missing'; rerun with --debug and report this\n"
    )


def test_a_closed_stdout_pipe_says_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    silenced: list[bool] = []
    monkeypatch.setattr(tui, "silence_stdout", lambda: silenced.append(True))
    assert tui.report(BrokenPipeError(), debug=True) == 141
    assert silenced == [True] and capsys.readouterr() == ("", "")


def test_quiet_silences_notices_but_not_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    tui.notifier(quiet=True)("kernel backend not available; using openssl")
    tui.notice("unseen", quiet=True)
    assert capsys.readouterr().err == ""
    tui.notifier(quiet=False)("kernel backend not available; using openssl")
    tui.warning("the key's bytes now enter this process's memory")
    assert capsys.readouterr().err == (
        "kstream: notice: kernel backend not available; using openssl\n"
        "kstream: warning: the key's bytes now enter this process's memory\n"
    )


def test_terminal_columns_is_what_shutil_says(monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    for value in ("100", "0", "x", None):
        if value is None:
            monkeypatch.delenv("COLUMNS", raising=False)
        else:
            monkeypatch.setenv("COLUMNS", value)
        assert tui.terminal_columns() == shutil.get_terminal_size().columns


def test_signals_have_their_own_messages_and_statuses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Partial outputs are named only where one was removed."""
    import kstream.atomic

    removed: list[str] = []
    monkeypatch.setattr(kstream.atomic, "partials_removed", removed)
    ctrl_c, term = tui.interrupted(), tui.interrupted(terminated=True)
    assert (str(ctrl_c), ctrl_c.exit_code) == ("interrupted", 130)
    assert (str(term), term.exit_code) == ("terminated", 143)
    removed.append("out.kst")
    assert str(tui.interrupted()) == "interrupted; the partial output 'out.kst' was removed"
    removed.append("b.kst")
    assert str(tui.interrupted(terminated=True)) == (
        "terminated; 2 partial output files were removed"
    )


def test_terminals_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "isatty", lambda fd: fd == 1)
    tui.refuse_terminal(0, "not raised: stdin is no terminal here")
    with pytest.raises(UsageError, match="^no ciphertext on a terminal$") as exc:
        tui.refuse_terminal(1, "no ciphertext on a terminal")
    assert exc.value.exit_code == 2


def _ttys(monkeypatch: pytest.MonkeyPatch, stderr: bool, stdout: bool) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: stderr)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: stdout)


@pytest.mark.parametrize(
    ("stderr", "stdout", "stdout_data", "total", "shown"),
    [
        (False, False, False, None, False),  # a log file gets no bar
        (True, False, False, None, True),  # a pipe of unknown size
        (True, False, False, tui.SMALL_INPUT, True),
        (True, False, False, tui.SMALL_INPUT - 1, False),  # done before a bar could say much
        (True, True, True, None, False),  # the plaintext goes to the same terminal
        (True, True, False, None, True),  # stdout is a terminal but carries no data
    ],
)
def test_when_a_bar_is_shown_unasked(
    monkeypatch: pytest.MonkeyPatch,
    stderr: bool,
    stdout: bool,
    stdout_data: bool,
    total: int | None,
    shown: bool,
) -> None:
    _ttys(monkeypatch, stderr, stdout)
    with tui.progress_bar(None, total, stdout_data=stdout_data) as progress:
        assert (progress is not None) == shown


def test_progress_or_no_progress_decides(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _ttys(monkeypatch, True, True)
    with tui.progress_bar(False, None, stdout_data=False) as progress:
        assert progress is None
    _ttys(monkeypatch, False, True)
    with tui.progress_bar(True, 2000, stdout_data=True) as progress:
        assert progress is not None
        progress(1000)
    err = capsys.readouterr().err
    assert "1.00k/2.00k" in err and "B/s" in err  # drawn at once, with the first bytes
    assert "0.00" not in err
    assert err.endswith("\r")  # the bar is removed again: the next line starts clean


def test_a_message_during_the_bar_goes_above_it() -> None:
    """The bar is cleared for the message and drawn again below it; when the run ends the
    message stays and the bar is gone."""
    script = (
        "import time\n"
        "from kstream.cli import tui\n"
        "with tui.progress_bar(True, 4_000_000, stdout_data=False) as progress:\n"
        "    progress(1_000_000)\n"
        "    time.sleep(0.3)\n"
        "    tui.notice('a notice while the bar is drawn', quiet=False)\n"
        "    progress(1_000_000)\n"
        "    time.sleep(0.3)\n"
        "    progress(1_000_000)\n"
    )
    seen = screen.run([sys.executable, "-c", script])
    assert seen.returncode == 0
    assert b"1.00M/4.00M" in seen.raw.split(b"kstream: notice:")[0]
    assert b"2.00M/4.00M" in seen.after(b"a notice while the bar is drawn")
    assert seen.lines == ["kstream: notice: a notice while the bar is drawn"]


# --------------------------------------------------------------------------- end to end


def test_key_material_never_in_messages(tmp_path: Path) -> None:
    secret = b"TOPSECRETKEYBYTES!"  # 18 bytes: a bad length
    (tmp_path / "k").write_bytes(secret)
    (tmp_path / "p").write_bytes(b"x")
    line = fails(
        "encrypt",
        "-k",
        tmp_path / "k",
        tmp_path / "p",
        tmp_path / "c",
        code=2,
        match="holds 18 bytes",
    )
    assert "TOPSECRET" not in line
    proc = kst(
        "encrypt", "--debug", "-k", tmp_path / "k", tmp_path / "p", tmp_path / "c", check=False
    )
    assert b"Traceback" in proc.stderr and b"TOPSECRET" not in proc.stderr


def test_refuses_ciphertext_to_terminal(
    tmp_path: Path, keyfile: Path, plain: tuple[Path, bytes]
) -> None:
    master, slave = pty.openpty()
    try:
        proc = subprocess.run(
            [*KST, "encrypt", "-k", str(keyfile), str(plain[0]), "-"],
            stdout=slave,
            stderr=subprocess.PIPE,
            timeout=60,
        )
        assert proc.returncode == 2
        assert b"refusing to write ciphertext to a terminal" in proc.stderr
        proc = subprocess.run(
            [*KST, "keygen", "-"], stdout=slave, stderr=subprocess.PIPE, timeout=60
        )
        assert proc.returncode == 2 and b"refusing to print a key" in proc.stderr
    finally:
        os.close(master)
        os.close(slave)


def test_closed_downstream_pipe_is_quiet(tmp_path: Path, keyfile: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(os.urandom(8 << 20))
    kst("encrypt", "-k", keyfile, big, tmp_path / "c")
    script = (
        f"{' '.join(KST)} decrypt -q -k {keyfile} {tmp_path / 'c'} - | head -c 100 "
        "> /dev/null; echo ${PIPESTATUS[0]}"
    )
    proc = subprocess.run(["bash", "-c", script], capture_output=True, timeout=60)
    assert proc.stdout.decode().strip() == "141"
    assert proc.stderr == b""


def test_progress_bar_on_request(tmp_path: Path, keyfile: Path, plain: tuple[Path, bytes]) -> None:
    proc = kst("encrypt", "-q", "--progress", "-k", keyfile, plain[0], tmp_path / "c")
    assert b"%" in proc.stderr or b"B/s" in proc.stderr
    assert kst("encrypt", "-q", "-k", keyfile, plain[0], tmp_path / "c2").stderr == b""


# --------------------------------------------------------------------------- on a terminal


def _fallback() -> list[str]:
    """What ``auto`` leaves on screen on this host: its one notice, or nothing."""
    from kstream.backends.kernel.backend import KernelBackend
    from kstream.backends.select import FALLBACK_NOTICE

    return [] if KernelBackend().probe().available else [f"kstream: notice: {FALLBACK_NOTICE}"]


def _slowly(
    data: bytes, pieces: int, pause: float, stall: float = 0.0
) -> Callable[[subprocess.Popen[bytes], screen.Terminal], None]:
    """Feed ``data`` to stdin in ``pieces`` with ``pause`` seconds between them; after the
    first piece, ``stall`` seconds more, during which the screen must not change."""

    def feed(proc: subprocess.Popen[bytes], term: screen.Terminal) -> None:
        assert proc.stdin is not None
        step = -(-len(data) // pieces)
        for at in range(0, len(data), step):
            proc.stdin.write(data[at : at + step])
            proc.stdin.flush()
            term.read(pause)
            if at == 0 and stall:
                before = term.raw
                term.read(0.3)  # the first piece is through; now nothing more comes
                stalled = term.read(stall)
                assert b"B/s" not in term.raw, term.raw[len(before) :]
                assert stalled == b""

    return feed


def _frames(raw: bytes) -> list[bytes]:
    """Every drawing of a bar in ``raw``."""
    return [frame for frame in raw.split(b"\r") if b"B/s" in frame]


def test_a_file_run_leaves_the_notice_and_no_bar(tmp_path: Path, keyfile: Path) -> None:
    """The issue's own run: what stays is the fallback notice (if any), never a stale 0%."""
    big = tmp_path / "big"
    big.write_bytes(os.urandom(32 << 20))
    seen = screen.run([*KST, "encrypt", "-k", str(keyfile), str(big), str(tmp_path / "c")])
    assert seen.returncode == 0
    assert seen.lines == _fallback()
    seen = screen.run(
        [*KST, "decrypt", "-k", str(keyfile), str(tmp_path / "c"), str(tmp_path / "d")]
    )
    assert (seen.returncode, seen.lines) == (0, _fallback())
    assert (tmp_path / "d").read_bytes() == big.read_bytes()


@pytest.mark.parametrize("command", ["encrypt", "decrypt"])
def test_a_slow_pipe_gets_a_bar_that_goes_away(tmp_path: Path, keyfile: Path, command: str) -> None:
    data = os.urandom(6 << 20)
    if command == "decrypt":
        (tmp_path / "p").write_bytes(data)
        kst("encrypt", "-k", keyfile, tmp_path / "p", tmp_path / "c")
        feed = (tmp_path / "c").read_bytes()
    else:
        feed = data
    seen = screen.run(
        [*KST, command, "-k", str(keyfile), "-", str(tmp_path / "out")],
        feed=_slowly(feed, 12, 0.15),
    )
    assert seen.returncode == 0
    frames = _frames(seen.raw)
    assert frames  # the run lasted long enough for a bar
    assert not any(b"0.00B" in frame for frame in frames)
    assert seen.lines == _fallback()
    if command == "decrypt":
        assert (tmp_path / "out").read_bytes() == data


def test_a_run_with_a_bar_shows_only_kstream_s_lines_and_makes_no_semaphore(
    tmp_path: Path, keyfile: Path
) -> None:
    """tqdm's default lock adds a multiprocessing RLock: a POSIX semaphore, which 3.14's
    resource tracker (a process of its own) reported at exit as "leaked semaphore objects",
    on the user's terminal, after the run. The bar's lock is a thread lock instead, so no
    multiprocessing lock is made and no tracker is started: the command is run the way its
    script runs it (exit by ``os._exit``), and reports which multiprocessing modules it
    imported, just before exiting, into a file."""
    report = tmp_path / "multiprocessing"
    code = (
        "import os, sys\nfrom kstream.cli import tui\nfrom kstream.cli.main import main\n"
        "status = main()\n"
        "loaded = [m for m in sys.modules if 'multiprocessing' in m.split('.')[0]]\n"
        f"with open({str(report)!r}, 'w') as f:\n    f.write(' '.join(loaded))\n"
        "os._exit(tui.flush(status))"
    )
    seen = screen.run(
        [sys.executable, "-c", code, "encrypt", "-k", str(keyfile), "-", str(tmp_path / "c")],
        feed=_slowly(os.urandom(6 << 20), 12, 0.15),
    )
    assert seen.returncode == 0
    assert _frames(seen.raw)  # there was a bar
    assert report.read_text() == ""
    # What the terminal got, the bar's drawings and erasures aside, is kstream's lines only.
    assert seen.lines == _fallback()
    text = seen.raw.replace(b"\x1b[A", b"").replace(b"\x1b[K", b"")
    rest = [piece for piece in re.split(rb"[\r\n]", text) if piece.strip() and b"B/s" not in piece]
    assert all(piece.startswith(b"kstream: ") for piece in rest), rest


def test_a_stalled_input_shows_no_bar_until_data_flows(tmp_path: Path, keyfile: Path) -> None:
    """The first piece is read, then nothing comes for a while: no ``0.00B`` bar stays up
    meanwhile (nor any bar: nothing has flowed long enough); once data flows the bar
    counts real bytes, and it is gone at the end."""
    data = os.urandom(5 << 20)
    seen = screen.run(
        [*KST, "encrypt", "-k", str(keyfile), "-", str(tmp_path / "c")],
        feed=_slowly(data, 10, 0.15, stall=1.5),
    )
    assert seen.returncode == 0
    frames = _frames(seen.raw)
    assert frames and not any(frame.startswith(b"0.00") for frame in frames)
    assert seen.lines == _fallback()


def test_plaintext_to_the_terminal_gets_no_bar(tmp_path: Path, keyfile: Path) -> None:
    """Decrypting to the terminal prints the plaintext and nothing glued to it, for a small
    file (the issue's hello.kst) and for a slow pipe whose size is unknown."""
    (tmp_path / "hello").write_bytes(b"hello world\n")
    kst("encrypt", "-k", keyfile, tmp_path / "hello", tmp_path / "hello.kst")
    seen = screen.run(
        [*KST, "decrypt", "-k", str(keyfile), str(tmp_path / "hello.kst"), "-"], stdout_tty=True
    )
    assert (seen.returncode, seen.lines) == (0, [*_fallback(), "hello world"])

    text = b"".join(b"line %07d\n" % i for i in range(200_000))  # 2.4 MB
    (tmp_path / "text").write_bytes(text)
    kst("encrypt", "-k", keyfile, tmp_path / "text", tmp_path / "text.kst")
    seen = screen.run(
        [*KST, "decrypt", "-k", str(keyfile), "-", "-"],
        stdout_tty=True,
        feed=_slowly((tmp_path / "text.kst").read_bytes(), 8, 0.15),
    )
    assert seen.returncode == 0
    notices = b"".join(line.encode() + b"\r\n" for line in _fallback())
    assert seen.raw == notices + text.replace(b"\n", b"\r\n")


def test_an_error_while_the_bar_is_up_lands_above_it(tmp_path: Path, keyfile: Path) -> None:
    """Many files, one of them damaged: its error line appears while the bar is drawn, and
    what stays is the error and the summary, with no piece of a bar."""
    for name in ("a", "c"):
        (tmp_path / name).write_bytes(os.urandom(4 << 20))
        kst("encrypt", "-q", "-k", keyfile, tmp_path / name, tmp_path / f"{name}.kst")
        (tmp_path / name).unlink()
    (tmp_path / "b.kst").write_bytes(b"not kstream at all" * 100)
    seen = screen.run(
        [
            *KST,
            "decrypt",
            "--progress",
            "-j",
            "1",
            "-k",
            str(keyfile),
            "--suffix",
            ".kst",
            "a.kst",
            "b.kst",
            "c.kst",
        ],
        cwd=str(tmp_path),
    )
    assert seen.returncode == 1
    assert _frames(seen.raw.split(b"kstream: error:")[0])  # the bar was up before the error
    *first, error, summary = seen.lines
    assert first == _fallback()
    assert error.startswith("kstream: error: b.kst: input is not a kstream file"), seen.lines
    assert summary.startswith("kstream: notice: 3 files: 2 done, 1 failed, "), seen.lines
    assert "B/s" not in error + summary
