"""Atomic output: appears whole on commit, vanishes on abort, never clobbers by surprise."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kstream.atomic import PARTIAL_SUFFIX, AtomicFile, check_output_path
from kstream.errors import IOFailure, UsageError


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
    check_output_path(str(tmp_path / "new"), force=False)
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(UsageError, match="already exists"):
        check_output_path(str(tmp_path / "f"), force=False)
    check_output_path(str(tmp_path / "f"), force=True)
    with pytest.raises(UsageError, match="same file"):
        check_output_path(str(tmp_path / "f"), force=True, src=str(tmp_path / "f"))
    with pytest.raises(UsageError, match="is a directory"):
        check_output_path(str(tmp_path), force=True)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(UsageError, match="not a regular file"):
        check_output_path(str(tmp_path / "fifo"), force=True)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(IOFailure, match="cannot create output in"):
        AtomicFile(str(tmp_path / "nope" / "o"), force=False)
