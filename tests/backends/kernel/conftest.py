"""Fixtures shared by the kernel backend's tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from kstream.backends.kernel import sockets


@pytest.fixture
def sysctl(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[[int | None], None]:
    """Set the simulated ``crypto.af_alg_restrict`` (``None``: the sysctl does not exist)."""
    path = tmp_path / "af_alg_restrict"
    monkeypatch.setattr(sockets, "AF_ALG_RESTRICT", str(path))

    def set_value(value: int | None) -> None:
        if value is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(f"{value}\n")

    return set_value
