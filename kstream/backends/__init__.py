"""The cipher backends: the contract every backend meets, and the choice between them.

:mod:`kstream.backends.select` holds the registry and the selection policy,
:mod:`kstream.backends.kernel` the AF_ALG backend, :mod:`kstream.backends.openssl` the
fallback. The names below are what the rest of kstream imports from ``kstream.backends``.
"""

from __future__ import annotations

from kstream.backends.base import (
    Availability,
    Backend,
    CipherOptions,
    CipherStream,
    FdCipherStream,
    counter_add,
)
from kstream.backends.select import BACKEND_NAMES, all_backends, get_backend, select_backend

__all__ = [
    "BACKEND_NAMES",
    "Availability",
    "Backend",
    "CipherOptions",
    "CipherStream",
    "FdCipherStream",
    "all_backends",
    "counter_add",
    "get_backend",
    "select_backend",
]
