"""Fixtures of the file-object tests: a key, its key file and a passphrase file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sealed import PASSPHRASE


@pytest.fixture
def key_bytes() -> bytes:
    return os.urandom(32)


@pytest.fixture
def key_file(tmp_path: Path, key_bytes: bytes) -> Path:
    path = tmp_path / "k.key"
    path.write_text(key_bytes.hex() + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def passphrase_file(tmp_path: Path) -> Path:
    path = tmp_path / "phrase"
    path.write_bytes(PASSPHRASE + b"\n")
    path.chmod(0o600)
    return path
