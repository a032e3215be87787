"""Fixtures shared by the command-line tests: a key file and a plaintext file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from clirun import kst


@pytest.fixture
def keyfile(tmp_path: Path) -> Path:
    path = tmp_path / "key"
    kst("keygen", "--bits", 256, path)
    return path


@pytest.fixture
def plain(tmp_path: Path) -> tuple[Path, bytes]:
    data = os.urandom(200_003)
    path = tmp_path / "plain"
    path.write_bytes(data)
    return path, data
