"""The backend registry, the ``auto`` / ``kernel`` / ``openssl`` selection policy, and the
key a run uses with the chosen backend.

Only :mod:`kstream.engine.plan` resolves a backend (once per run); everything below it gets
the resolved backend object.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from kstream.backends.base import BACKEND_NAMES, FALLBACK_NOTICE, Backend, CipherOptions
from kstream.backends.kernel import KernelBackend
from kstream.backends.openssl import OpenSSLBackend
from kstream.errors import BackendUnavailable, UsageError, option, worded
from kstream.keys.key import Key

Notify = Callable[[str], None]


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
    options: CipherOptions | None = None,
) -> Backend:
    """Resolve a user's ``--backend`` choice to a working backend.

    ``auto`` prefers the kernel and falls back to OpenSSL, telling ``notify`` in one line;
    naming a backend explicitly never falls back: it fails with the reason instead. The
    kernel counts as working only when the driver ``options`` name (or the kernel's pick)
    also passes the counter-carry known answer (:meth:`KernelBackend.carry_check`). A driver
    named in ``options`` is an explicit choice of the kernel too: it is never dropped in
    silence for OpenSSL (see :func:`_refuse_driver`).
    """
    if name == "auto":
        kernel = KernelBackend()
        status = kernel.probe()
        if not status.available:
            _refuse_driver(
                options, "the kernel backend is not available here; see 'kstream backends'"
            )
            if notify is not None:
                notify(FALLBACK_NOTICE)
            return OpenSSLBackend()
        failure = kernel.carry_check(options)
        if failure is None:
            return kernel
        if options is not None and options.driver is not None:
            raise BackendUnavailable(
                f"{failure}; use another {option('driver')} or {option('openssl')}"
            )
        if notify is not None:
            notify(f"kernel backend unavailable ({failure}); using openssl")
        return OpenSSLBackend()
    backend = get_backend(name)
    if backend.name == "openssl":
        _refuse_driver(options, "openssl does not use kernel drivers")
        # Always available where kstream installs: its probe only words the reason with
        # OpenSSL's version, whose import (the whole binding) costs more start-up time than
        # a small file takes to encrypt.
        return backend
    status = backend.probe()
    if not status.available:
        raise BackendUnavailable(f"the {name} backend is not available: {status.reason}")
    if isinstance(backend, KernelBackend):
        failure = backend.carry_check(options)
        if failure is not None:
            raise BackendUnavailable(
                f"{failure}; use another {option('driver')} or {option('openssl')}"
            )
    return backend


def _refuse_driver(options: CipherOptions | None, why: str) -> None:
    """A usage error if ``options`` name a kernel driver that the run would not use: the
    user asked for that driver (perhaps to avoid a slow or broken one), and encrypting
    through something else without a word would hide that the choice had no effect."""
    if options is not None and options.driver is not None:
        raise UsageError(f"{option('driver=')}{options.driver} cannot be used: {why}")


def openssl_reads_warning(key: Key) -> str:
    ref = key.keyring_ref
    label = ref.label if ref is not None else "the key"
    return worded(
        f"warning: {option('openssl')} reads {label} out of the kernel keyring: "
        "the key's bytes now enter this process's memory"
    )


def backend_name(backend: str | Backend) -> str:
    """``auto``, ``kernel`` or ``openssl``: a name, or the name of a resolved backend."""
    return backend if isinstance(backend, str) else backend.name


def choose_backend(
    key: Key, backend: str | Backend, notify: Notify, options: CipherOptions | None = None
) -> Backend:
    """The backend for ``key``: the user's choice, except that a keyring key needs the kernel.

    A ``logon`` key cannot leave the kernel, so only the kernel backend can use it, and
    ``auto`` does not fall back. A ``user`` key could be read out; that happens only when the
    caller names ``openssl`` explicitly, with a warning through ``notify``.

    ``backend`` may be a backend this function resolved before, for a run over many files:
    it is used as it is (no second probe, no second notice), once it fits ``key``.
    """
    if not isinstance(backend, str):
        ref = key.keyring_ref
        if ref is not None and backend.name == "openssl" and ref.type != "user":
            choose_backend(key, "openssl", notify)  # raises the explanation
        return backend
    ref = key.keyring_ref
    if ref is None:
        return select_backend(backend, notify, options)
    if backend == "openssl":
        _refuse_driver(options, "openssl does not use kernel drivers")
        if ref.type != "user":
            raise UsageError(
                f"{ref.label} cannot be used with {option('openssl')}: a {ref.type} key never "
                "leaves the kernel, so only the kernel backend can use it (Linux ≥ 6.2)"
            )
        notify(openssl_reads_warning(key))
        return OpenSSLBackend()
    if backend not in ("auto", "kernel"):
        get_backend(backend)  # raises the usual message for an unknown backend name
    kernel = KernelBackend()
    status = kernel.probe()
    if not status.available:
        why = (
            f"; {option('openssl')} can read this user key into process memory instead"
            if ref.type == "user"
            else ""
        )
        raise BackendUnavailable(
            f"{ref.label} can only be used through the kernel crypto API, which is not "
            f"available here: {status.reason}{why}"
        )
    failure = kernel.carry_check(options)
    if failure is not None:
        raise BackendUnavailable(
            f"{failure}; {ref.label} can only be used through the kernel"
            f" crypto API: try another {option('driver')}"
        )
    return kernel


@contextlib.contextmanager
def prepared_key(key: Key, backend: str | Backend, notify: Notify) -> Iterator[Key]:
    """``key`` as the run will use it; a temporary copy's buffer is wiped when the run ends
    (best effort: the ``bytes`` copies that reading it and keying the cipher make are only
    freed).

    A ``user`` keyring key with an explicit ``backend="openssl"`` is read once here (with
    the warning), so the cipher and the MAC derivation use the same bytes and nothing asks
    the kernel for the key twice. Every other key is used as it is.
    """
    ref = key.keyring_ref
    if ref is None or backend_name(backend) != "openssl":
        yield key
        return
    if ref.type != "user":
        choose_backend(key, "openssl", notify)  # raises the explanation
    notify(openssl_reads_warning(key))
    copy = Key(key.material())
    try:
        yield copy
    finally:
        copy.wipe()


__all__ = [
    "BACKEND_NAMES",
    "FALLBACK_NOTICE",
    "all_backends",
    "backend_name",
    "choose_backend",
    "get_backend",
    "prepared_key",
    "select_backend",
]
