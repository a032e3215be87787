"""``kstream encrypt/decrypt`` into outputs that are not files (/dev/null, FIFOs, /dev/stdout,
a shell's ``>(cmd)``), and the CLI's side of error wording: its messages name its flags,
where the API's name keyword arguments (tests/test_api.py). Real subprocesses."""

from __future__ import annotations

import os
import select
import shlex
import signal
import subprocess
import threading
from pathlib import Path

import pytest
from clirun import KST, fails, kst

from kstream.format import DEFAULT_SEGMENT as S
from kstream.format import HEADER_SIZE, MAGIC


class Drain(threading.Thread):
    """The consumer at a FIFO's other end."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path, self.data = path, b""
        self.start()

    def run(self) -> None:
        with open(self.path, "rb") as f:
            self.data = f.read()

    def result(self) -> bytes:
        self.join(timeout=60)
        assert not self.is_alive()
        return self.data


@pytest.fixture
def encrypted(tmp_path: Path, keyfile: Path, plain: tuple[Path, bytes]) -> Path:
    kst("encrypt", "-q", "-k", keyfile, plain[0], tmp_path / "c")
    return tmp_path / "c"


def test_dev_null_needs_no_force_and_checks_the_file(
    tmp_path: Path, keyfile: Path, plain: tuple[Path, bytes], encrypted: Path
) -> None:
    assert kst("encrypt", "-q", "-k", keyfile, plain[0], "/dev/null").stderr == b""
    assert kst("decrypt", "-q", "-k", keyfile, encrypted, "/dev/null").stderr == b""
    blob = bytearray(encrypted.read_bytes())
    blob[HEADER_SIZE + 5] ^= 1
    encrypted.write_bytes(blob)
    fails(
        "decrypt",
        "-q",
        "-k",
        keyfile,
        encrypted,
        "/dev/null",
        code=1,
        match="authentication failed: wrong key or the file was modified (segment 0)",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "key", "plain"]


def test_fifo_both_ways(
    tmp_path: Path, keyfile: Path, plain: tuple[Path, bytes], encrypted: Path
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = Drain(fifo)
    kst("decrypt", "-q", "-k", keyfile, encrypted, fifo)
    assert reader.result() == plain[1]
    reader = Drain(fifo)
    kst("encrypt", "-q", "-k", keyfile, plain[0], fifo)
    (tmp_path / "again").write_bytes(reader.result())
    kst("decrypt", "-q", "-k", keyfile, tmp_path / "again", tmp_path / "d")
    assert (tmp_path / "d").read_bytes() == plain[1]
    assert fifo.is_fifo() and not list(tmp_path.glob("*partial*"))


def test_failure_midway_into_a_fifo(tmp_path: Path, keyfile: Path) -> None:
    data = os.urandom(3 * S)
    (tmp_path / "p").write_bytes(data)
    kst("encrypt", "-q", "-k", keyfile, tmp_path / "p", tmp_path / "c")
    blob = bytearray((tmp_path / "c").read_bytes())
    first = HEADER_SIZE + 2 * (S + 20)
    blob[first + 100] ^= 1
    (tmp_path / "c").write_bytes(blob)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = Drain(fifo)
    line = fails(
        "decrypt", "-q", "-k", keyfile, tmp_path / "c", fifo, code=1, match="modified at segment 2"
    )
    assert reader.result() == data[: 2 * S]
    assert line == (
        f"kstream: error: authentication failed: the file was modified at segment 2 (bytes "
        f"{first} to {first + S + 19} of the file); the key is right: segment 0 verified "
        f"with it; {2 * S} bytes had already gone into the pipe '{fifo}' (nothing to remove: "
        "a pipe cannot take them back)"
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_a_fifo_planted_by_another_user_gets_nothing(
    tmp_path: Path, keyfile: Path, encrypted: Path
) -> None:
    """uid 3000's FIFO in a sticky shared directory, read by uid 3000: refused, exit 2."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    fifo = shared / "report.txt"
    os.mkfifo(fifo, 0o622)
    os.chown(fifo, 3000, 3000)
    attacker = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        line = fails(
            "decrypt",
            "-q",
            "-k",
            keyfile,
            encrypted,
            fifo,
            code=2,
            match="a FIFO owned by another user (uid 3000)",
        )
        assert os.read(attacker, 100) == b""  # nothing reached it
    finally:
        os.close(attacker)
    assert line.startswith(f"kstream: error: refusing to write to '{fifo}': ")


def test_a_fifo_without_a_reader_says_so_and_ctrl_c_stops_it(
    tmp_path: Path, keyfile: Path, encrypted: Path
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [*KST, "decrypt", "-k", str(keyfile), str(encrypted), str(fifo)], stderr=subprocess.PIPE
    )
    assert proc.stderr is not None
    try:
        # After a few seconds, not never.
        assert select.select([proc.stderr], [], [], 30)[0], "no notice"
        line = proc.stderr.readline().decode()
        assert line == (
            f"kstream: notice: waiting for a reader to open the FIFO '{fifo}'; "
            "nothing is written before one does (Ctrl-C stops)\n"
        )
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    finally:
        proc.kill()
        proc.wait()
    assert proc.stderr.read().decode().startswith("kstream: error: interrupted")


def test_process_substitution_and_dev_stdout(
    keyfile: Path, plain: tuple[Path, bytes], encrypted: Path, tmp_path: Path
) -> None:
    """``>(wc -c)`` is /dev/fd/63, a pipe; /dev/stdout is whatever stdout is."""
    kstream = shlex.join(KST)
    script = (
        f"{kstream} decrypt -q -k {shlex.quote(str(keyfile))} "
        f"{shlex.quote(str(encrypted))} >(wc -c > {shlex.quote(str(tmp_path / 'n'))}); "
        "wait $!"
    )
    proc = subprocess.run(["bash", "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert int((tmp_path / "n").read_text()) == len(plain[1])
    out = kst("decrypt", "-q", "-k", keyfile, encrypted, "/dev/stdout").stdout
    assert out == plain[1]
    with open(tmp_path / "via-stdout", "wb") as f:  # a regular file behind /dev/stdout
        subprocess.run(
            [*KST, "encrypt", "-q", "-k", str(keyfile), str(plain[0]), "/dev/stdout"],
            stdout=f,
            check=True,
            timeout=120,
        )
    kst("decrypt", "-q", "-k", keyfile, tmp_path / "via-stdout", tmp_path / "d")
    assert (tmp_path / "d").read_bytes() == plain[1]


def test_ciphertext_to_a_terminal_path_is_refused(keyfile: Path, plain: tuple[Path, bytes]) -> None:
    leader, follower = os.openpty()
    try:
        for out in ("/dev/stdout", os.ttyname(follower)):
            proc = subprocess.run(
                [*KST, "encrypt", "-q", "-k", str(keyfile), str(plain[0]), out],
                stdout=follower,
                stderr=subprocess.PIPE,
                timeout=120,
            )
            assert proc.returncode == 2
            assert proc.stderr.decode() == (
                f"kstream: error: refusing to write ciphertext to "
                f"the terminal '{out}'; give a file or a pipe\n"
            )
        os.set_blocking(leader, False)
        with pytest.raises(BlockingIOError):
            os.read(leader, 100)  # nothing reached the terminal
    finally:
        os.close(leader)
        os.close(follower)


def test_errors_name_the_command_lines_flags(
    tmp_path: Path, keyfile: Path, plain: tuple[Path, bytes], encrypted: Path
) -> None:
    """Errors raised inside the API, shown by the command line: its flags, not keywords."""
    (tmp_path / "pw").write_text("correct horse\n")
    os.chmod(tmp_path / "pw", 0o600)
    kst(
        "encrypt",
        "-q",
        "--passphrase-file",
        tmp_path / "pw",
        "--work-factor",
        11,
        plain[0],
        tmp_path / "w.kst",
    )
    fails(
        "encrypt",
        "-k",
        keyfile,
        plain[0],
        encrypted,
        code=2,
        match=f"output '{encrypted}' already exists; use --force to overwrite it",
    )
    fails(
        "decrypt",
        "-k",
        keyfile,
        tmp_path / "w.kst",
        tmp_path / "d",
        code=2,
        match="give the passphrase with -p/--passphrase (asks on the terminal), "
        "--passphrase-fd N or --passphrase-file PATH",
    )
    fails(
        "decrypt",
        "--passphrase-file",
        tmp_path / "pw",
        encrypted,
        tmp_path / "d",
        code=2,
        match="give the key with -k/--key-file, --key-fd, --key-name or --key-serial",
    )
    fails(
        "decrypt",
        "--passphrase-file",
        tmp_path / "pw",
        "--max-work-factor",
        10,
        tmp_path / "w.kst",
        tmp_path / "d",
        code=1,
        match="allow it with --max-work-factor 11",
    )
    fails(
        "decrypt", "-k", keyfile, plain[0], tmp_path / "d", code=1, match="was it made with --raw?"
    )
    # Many files: each file's error line is worded for the command line too.
    (tmp_path / "plain.kst").write_bytes(MAGIC)  # an old encryption: replacing it is plausible
    fails(
        "encrypt",
        "-k",
        keyfile,
        "--suffix",
        ".kst",
        plain[0],
        code=2,
        match="already exists; use --force to overwrite it",
    )


def test_truncated_file_decrypted_into_a_pipe_says_what_went_in(
    tmp_path: Path, keyfile: Path
) -> None:
    """``kstream decrypt dir.tar.kst - | tar x``: the reader already has the verified
    segments, so the error line says how many bytes, as for a FIFO or /dev/stdout."""
    data = os.urandom(3 * S)
    (tmp_path / "p").write_bytes(data)
    kst("encrypt", "-q", "-k", keyfile, tmp_path / "p", tmp_path / "c")
    blob = (tmp_path / "c").read_bytes()
    (tmp_path / "t").write_bytes(blob[: HEADER_SIZE + 2 * (S + 20) + 1000])
    proc = subprocess.run(
        f"{shlex.join(KST)} decrypt -q -k {shlex.quote(str(keyfile))} "
        f"{shlex.quote(str(tmp_path / 't'))} - | cat > "
        f"{shlex.quote(str(tmp_path / 'got'))}; exit ${{PIPESTATUS[0]}}",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.decode() == (
        "kstream: error: file is truncated: segment 2 is incomplete; "
        f"{2 * S} bytes had already gone into the pipe stdout (nothing to remove: a pipe "
        "cannot take them back)\n"
    )
    assert (tmp_path / "got").read_bytes() == data[: 2 * S]
