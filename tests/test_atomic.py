"""Atomic output: appears whole on commit, vanishes on abort, never clobbers by surprise;
streams (FIFOs, character devices, open descriptors) are written directly."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from pathlib import Path

import pytest

from kstream.atomic import (
    PARTIAL_SUFFIX,
    AtomicFile,
    check_output_path,
    open_stream,
    own_descriptor,
)
from kstream.errors import IOFailure, UsageError, command_line_words


def test_commit_and_mode(tmp_path: Path) -> None:
    out = AtomicFile(str(tmp_path / "o"), force=False)
    assert os.path.basename(out.tmp_path).startswith(".o.")
    assert out.tmp_path.endswith(PARTIAL_SUFFIX)
    os.write(out.fd, b"data")
    assert not (tmp_path / "o").exists()
    out.commit()
    assert (tmp_path / "o").read_bytes() == b"data"
    assert stat.S_IMODE((tmp_path / "o").stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["o"]


def test_abort_keeps_existing(tmp_path: Path) -> None:
    (tmp_path / "o").write_bytes(b"old")
    out = AtomicFile(str(tmp_path / "o"), force=True)
    os.write(out.fd, b"new")
    out.abort()
    out.abort()
    assert os.listdir(tmp_path) == ["o"] and (tmp_path / "o").read_bytes() == b"old"


def test_force_replaces(tmp_path: Path) -> None:
    (tmp_path / "o").write_bytes(b"old")
    out = AtomicFile(str(tmp_path / "o"), force=True)
    os.write(out.fd, b"new")
    out.commit()
    assert (tmp_path / "o").read_bytes() == b"new"


def test_no_clobber_when_output_appears_meanwhile(tmp_path: Path) -> None:
    out = AtomicFile(str(tmp_path / "o"), force=False)
    os.write(out.fd, b"new")
    (tmp_path / "o").write_bytes(b"someone else's")
    with pytest.raises(UsageError, match="already exists"):
        out.commit()
    assert (tmp_path / "o").read_bytes() == b"someone else's"
    assert os.listdir(tmp_path) == ["o"]


def test_check_output_path(tmp_path: Path) -> None:
    assert check_output_path(str(tmp_path / "new"), force=False) is False
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(UsageError, match="already exists; use force=True to overwrite it"):
        check_output_path(str(tmp_path / "f"), force=False)
    assert check_output_path(str(tmp_path / "f"), force=True) is False
    with pytest.raises(UsageError, match="same file"):
        check_output_path(str(tmp_path / "f"), force=True, src=str(tmp_path / "f"))
    with pytest.raises(UsageError, match="is a directory"):
        check_output_path(str(tmp_path), force=True)


def test_overwrite_refusal_names_the_callers_option(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    for words, hint in (
        (contextlib.nullcontext(), "force=True"),
        (command_line_words(), "--force"),
    ):
        with words:
            with pytest.raises(UsageError) as caught:
                check_output_path(str(tmp_path / "f"), force=False)
            assert str(caught.value) == (
                f"output '{tmp_path / 'f'}' already exists; use {hint} to overwrite it"
            )
    # The words are chosen when the message is shown, not when the error is raised.
    assert "force=True" in str(caught.value) and "\x00" not in repr(caught.value)


def test_streams_are_written_directly_without_force(tmp_path: Path) -> None:
    """A FIFO, a character device and this process's descriptors are outputs to write into,
    not files to replace: no --force, no refusal, whatever they are connected to."""
    os.mkfifo(tmp_path / "fifo")
    assert check_output_path(str(tmp_path / "fifo"), force=False) is True
    assert check_output_path("/dev/null", force=False, src="/dev/null") is True
    assert check_output_path("/dev/stdout", force=False) is True
    with open(tmp_path / "f", "wb") as f:  # a regular file behind /dev/fd/N: still that fd
        assert check_output_path(f"/dev/fd/{f.fileno()}", force=False) is True
        assert own_descriptor(f"/dev/fd/{f.fileno()}") == f.fileno()
    assert own_descriptor("/proc/self/fd/7") == 7 and own_descriptor("/dev/stderr") == 2
    assert own_descriptor("/dev/fd/x") is None and own_descriptor("/dev/null") is None


def test_terminals_are_refused_for_ciphertext(tmp_path: Path) -> None:
    leader, follower = os.openpty()
    try:
        for path in (os.ttyname(follower), f"/dev/fd/{follower}"):
            assert check_output_path(path, force=False) is True
            with pytest.raises(UsageError, match=f"ciphertext to the terminal '{path}'"):
                check_output_path(path, force=False, no_terminal=True)
        assert check_output_path("/dev/null", force=False, no_terminal=True) is True
    finally:
        os.close(leader)
        os.close(follower)


def test_sockets_and_block_devices_are_refused(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
        with pytest.raises(
            UsageError,
            match="is a socket or other special file; kstream "
            "writes to files, FIFOs and character devices",
        ):
            check_output_path(str(tmp_path / "sock"), force=True)
    block = next((e.path for e in os.scandir("/dev") if stat.S_ISBLK(e.stat().st_mode)), None)
    if block is not None:  # no mknod without root: a block device this host has, if any
        with pytest.raises(UsageError, match="is a block device"):
            check_output_path(block, force=True)


def test_open_stream_waits_for_a_fifo_reader(tmp_path: Path) -> None:
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    assert open_stream(fifo) is None  # nobody reads yet: try again later, never block
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        opened = open_stream(fifo)
        assert opened is not None and opened[1] is True
        fd = opened[0]
        assert os.get_blocking(fd)
        os.write(fd, b"through")
        os.close(fd)
        assert os.read(reader, 100) == b"through"
    finally:
        os.close(reader)
    assert open_stream("/dev/stdout") == (1, False)  # used as it is, never closed by kstream


#: Owns the FIFO another user plants (root may chown to any uid; the tests run as root).
OTHER_UID = 3000
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


def planted_fifo(tmp_path: Path) -> str:
    """A FIFO of another user, mode 0622, in a sticky world-writable directory (/tmp)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    fifo = str(shared / "report.txt")
    os.mkfifo(fifo, 0o622)
    os.chmod(fifo, 0o622)
    os.chown(fifo, OTHER_UID, OTHER_UID)
    return fifo


def planted_message(fifo: str) -> str:
    return (
        f"refusing to write to '{fifo}': a FIFO owned by another user (uid {OTHER_UID}), "
        "who can read what goes into it; if that is intended, open it yourself and pass "
        "the descriptor (e.g. OUT '-' and a shell redirection)"
    )


@needs_root
def test_another_users_fifo_is_refused(tmp_path: Path) -> None:
    """Its owner would read the plaintext: refused by path, and again by what was opened."""
    fifo = planted_fifo(tmp_path)
    with pytest.raises(UsageError) as caught:
        check_output_path(fifo, force=False)
    assert str(caught.value) == planted_message(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # the attacker, ready to read
    try:
        with pytest.raises(UsageError) as caught:
            open_stream(fifo)  # what the path names after the check: a swapped-in FIFO
        assert str(caught.value) == planted_message(fifo)
        assert os.read(reader, 100) == b""  # nothing reached it
    finally:
        os.close(reader)
    own = str(tmp_path / "shared" / "mine")
    os.mkfifo(own)  # the user's own FIFO, and root's devices, are outputs as before
    assert os.stat(own).st_uid == os.geteuid()
    assert check_output_path(own, force=False) is True
    assert os.stat("/dev/null").st_uid == 0 and check_output_path("/dev/null", force=False)


def test_open_stream_never_writes_into_a_file_that_replaced_the_stream(tmp_path: Path) -> None:
    path = tmp_path / "was-a-fifo"
    path.write_bytes(b"keep")
    with pytest.raises(UsageError, match="changed while kstream started"):
        open_stream(str(path))
    assert path.read_bytes() == b"keep"


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(IOFailure, match="cannot create output in"):
        AtomicFile(str(tmp_path / "nope" / "o"), force=False)
