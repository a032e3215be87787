"""What kstream shows on the terminal (kstream.cli.tui): one-line errors, tracebacks only
with --debug, notices and -q, warnings, the progress bar, terminals refused, exit codes."""

from __future__ import annotations

import os
import pty
import subprocess
from pathlib import Path

import pytest
from clirun import KST, fails, kst, one_error, run_main

from kstream.cli import tui
from kstream.errors import BackendUnavailable, IOFailure, UsageError

# --------------------------------------------------------------------------- the rules


def test_an_error_is_one_line_and_its_class_gives_the_status(
        capsys: pytest.CaptureFixture[str]) -> None:
    try:
        raise BackendUnavailable("the kernel backend is not available: no AF_ALG")
    except BackendUnavailable as exc:
        code = tui.report(exc, debug=False)
    assert code == 3
    assert capsys.readouterr() == ("", "kstream: error: the kernel backend is not available: "
                                   "no AF_ALG\n")


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
        {}["missing"]
    except KeyError as exc:
        assert tui.report(exc, debug=False) == tui.EXIT_SOFTWARE == 70
    assert capsys.readouterr().err == ("kstream: error: unexpected KeyError: 'missing'; "
                                       "rerun with --debug and report this\n")


def test_a_closed_stdout_pipe_says_nothing(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
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
        "kstream: warning: the key's bytes now enter this process's memory\n")


def test_a_usage_error_from_argparse_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        run_main(capsys, "encrypt", "--jobs", "0", "a", "b")
    assert exc.value.code == 2
    line = one_error(capsys.readouterr().err, "argument -j/--jobs: must be at least 1")
    assert line.endswith("; see 'kstream encrypt --help'")


def test_signals_have_their_own_messages_and_statuses() -> None:
    ctrl_c, term = tui.interrupted(), tui.interrupted(terminated=True)
    assert (str(ctrl_c), ctrl_c.exit_code) == (
        "interrupted; a partial output file was removed", 130)
    assert (str(term), term.exit_code) == ("terminated; a partial output file was removed", 143)


def test_terminals_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "isatty", lambda fd: fd == 1)
    tui.refuse_terminal(0, "not raised: stdin is no terminal here")
    with pytest.raises(UsageError, match="^no ciphertext on a terminal$") as exc:
        tui.refuse_terminal(1, "no ciphertext on a terminal")
    assert exc.value.exit_code == 2


def test_progress_bar_only_for_a_terminal_unless_asked(
        capsys: pytest.CaptureFixture[str]) -> None:
    with tui.progress_bar(None, 100) as progress:  # stderr is captured: not a terminal
        assert progress is None
    with tui.progress_bar(False, 100) as progress:
        assert progress is None
    with tui.progress_bar(True, 2048) as progress:
        assert progress is not None
        progress(1024)
    err = capsys.readouterr().err
    assert "/2.00k" in err and "B/s" in err
    assert err.endswith("\r")  # the bar is removed again: the next line starts clean


# --------------------------------------------------------------------------- end to end


def test_key_material_never_in_messages(tmp_path: Path) -> None:
    secret = b"TOPSECRETKEYBYTES!"  # 18 bytes: a bad length
    (tmp_path / "k").write_bytes(secret)
    (tmp_path / "p").write_bytes(b"x")
    line = fails("encrypt", "-k", tmp_path / "k", tmp_path / "p", tmp_path / "c", code=2,
                 match="holds 18 bytes")
    assert "TOPSECRET" not in line
    proc = kst("encrypt", "--debug", "-k", tmp_path / "k", tmp_path / "p", tmp_path / "c",
               check=False)
    assert b"Traceback" in proc.stderr and b"TOPSECRET" not in proc.stderr


def test_refuses_ciphertext_to_terminal(tmp_path: Path, keyfile: Path,
                                       plain: tuple[Path, bytes]) -> None:
    master, slave = pty.openpty()
    try:
        proc = subprocess.run([*KST, "encrypt", "-k", str(keyfile), str(plain[0]), "-"],
                              stdout=slave, stderr=subprocess.PIPE, timeout=60)
        assert proc.returncode == 2
        assert b"refusing to write ciphertext to a terminal" in proc.stderr
        proc = subprocess.run([*KST, "keygen", "-"], stdout=slave, stderr=subprocess.PIPE,
                              timeout=60)
        assert proc.returncode == 2 and b"refusing to print a key" in proc.stderr
    finally:
        os.close(master)
        os.close(slave)


def test_closed_downstream_pipe_is_quiet(tmp_path: Path, keyfile: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(os.urandom(8 << 20))
    kst("encrypt", "-k", keyfile, big, tmp_path / "c")
    script = (f"{' '.join(KST)} decrypt -q -k {keyfile} {tmp_path / 'c'} - | head -c 100 "
              "> /dev/null; echo ${PIPESTATUS[0]}")
    proc = subprocess.run(["bash", "-c", script], capture_output=True, timeout=60)
    assert proc.stdout.decode().strip() == "141"
    assert proc.stderr == b""


def test_progress_bar_on_request(tmp_path: Path, keyfile: Path,
                                 plain: tuple[Path, bytes]) -> None:
    proc = kst("encrypt", "-q", "--progress", "-k", keyfile, plain[0], tmp_path / "c")
    assert b"%" in proc.stderr or b"B/s" in proc.stderr
    assert kst("encrypt", "-q", "-k", keyfile, plain[0], tmp_path / "c2").stderr == b""
