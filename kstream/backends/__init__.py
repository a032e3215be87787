"""The cipher backends: the contract every backend meets, and the choice between them.

:mod:`kstream.backends.select` holds the registry and the selection policy,
:mod:`kstream.backends.kernel` the AF_ALG backend, :mod:`kstream.backends.openssl` the
fallback. The contract's names are imported here; the selection's only when asked for, so
that importing the contract (the command line's parser does) does not load OpenSSL.
"""

from __future__ import annotations

from typing import Any

from kstream.backends.base import (
    BACKEND_NAMES,
    Availability,
    Backend,
    CipherOptions,
    CipherStream,
    FdCipherStream,
    counter_add,
)


def __getattr__(name: str) -> Any:
    if name in ("all_backends", "get_backend", "select_backend"):
        from kstream.backends import select

        return getattr(select, name)
    raise AttributeError(f"module 'kstream.backends' has no attribute '{name}'")


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
