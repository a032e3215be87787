"""The backend registry and the ``auto`` / ``kernel`` / ``openssl`` selection policy."""

from __future__ import annotations

from collections.abc import Callable

from kstream.backends.base import Backend
from kstream.backends.kernel import KernelBackend
from kstream.backends.openssl import OpenSSLBackend
from kstream.errors import BackendUnavailable, UsageError

BACKEND_NAMES = ("auto", "kernel", "openssl")


def all_backends() -> list[Backend]:
    """Every backend kstream knows, in ``auto``'s order of preference."""
    return [KernelBackend(), OpenSSLBackend()]


def get_backend(name: str) -> Backend:
    """The backend called ``name`` (``kernel`` or ``openssl``), whether or not it works."""
    for backend in all_backends():
        if backend.name == name:
            return backend
    raise UsageError(f"unknown backend '{name}'; choose one of {', '.join(BACKEND_NAMES)}")


def select_backend(
    name: str = "auto",
    notify: Callable[[str], None] | None = None,
) -> Backend:
    """Resolve a user's ``--backend`` choice to a working backend.

    ``auto`` prefers the kernel and falls back to OpenSSL, telling ``notify`` why in one
    line; naming a backend explicitly never falls back: it fails with the reason instead.
    """
    if name == "auto":
        kernel = KernelBackend()
        status = kernel.probe()
        if status.available:
            return kernel
        if notify is not None:
            notify(f"kernel backend unavailable ({status.reason}); using openssl")
        return OpenSSLBackend()
    backend = get_backend(name)
    status = backend.probe()
    if not status.available:
        raise BackendUnavailable(f"the {name} backend is not available: {status.reason}")
    return backend


__all__ = ["BACKEND_NAMES", "all_backends", "get_backend", "select_backend"]
