"""kstream.memory: glibc malloc tuning, applied once per process."""

from __future__ import annotations

import platform

from kstream.memory import tune_malloc


def test_malloc_tuning_is_applied_once_on_glibc() -> None:
    """It changes process-wide settings: the first call decides, later ones repeat it."""
    applied = tune_malloc()
    assert applied == (platform.libc_ver()[0] == "glibc")
    assert tune_malloc() == applied
