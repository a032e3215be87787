"""The kernel backend: AES-CTR through the Linux kernel crypto API (AF_ALG).

The modules: :mod:`~.procfs` (``/proc/crypto``), :mod:`~.drivers` (which implementation,
how fast), :mod:`~.sockets` (the AF_ALG edge: bind, key, errors), :mod:`~.ctr` (the stream
and its transfers), :mod:`~.ecb_ctr` (the ``--verify`` reference), :mod:`~.hmac` (MAC keys
from keyring keys), :mod:`~.backend` (probe and open) and :mod:`~.diagnosis` (``kstream
backends``). They import one way only, in the order ``tests/test_house.py`` gives.

The names below are what the rest of kstream needs; the diagnosis is imported from its module.
Each is imported on first use: every ``auto`` run probes the kernel, and on a host without
AF_ALG (most containers) the probe needs only :mod:`~.sockets` and :mod:`~.backend`, not the
stream modules (and the ``socket`` module they import).
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: see kstream/__init__.py
if TYPE_CHECKING:
    from typing import Any

    from kstream.backends.kernel.backend import KernelBackend, ctr_aes_drivers, kernel_key
    from kstream.backends.kernel.ctr import AUTO_FD_TRANSFER, KernelStream, fd_kind
    from kstream.backends.kernel.drivers import CTR_AES, generic_warning
    from kstream.backends.kernel.ecb_ctr import KernelEcbCtrStream
    from kstream.backends.kernel.hmac import kernel_hmac_sha256
    from kstream.backends.kernel.sockets import KernelKey

_LAZY = {
    "KernelBackend": "backend",
    "ctr_aes_drivers": "backend",
    "kernel_key": "backend",
    "AUTO_FD_TRANSFER": "ctr",
    "KernelStream": "ctr",
    "fd_kind": "ctr",
    "CTR_AES": "drivers",
    "generic_warning": "drivers",
    "KernelEcbCtrStream": "ecb_ctr",
    "kernel_hmac_sha256": "hmac",
    "KernelKey": "sockets",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kstream.backends.kernel' has no attribute '{name}'")
    # Not importlib.import_module: every ``auto`` run gets here, and importing importlib
    # costs about as much start-up time as the module it would load.
    __import__(f"kstream.backends.kernel.{module}")
    value = getattr(globals()[module], name)
    globals()[name] = value
    return value


__all__ = [
    "AUTO_FD_TRANSFER",
    "CTR_AES",
    "KernelBackend",
    "KernelEcbCtrStream",
    "KernelKey",
    "KernelStream",
    "ctr_aes_drivers",
    "fd_kind",
    "generic_warning",
    "kernel_hmac_sha256",
    "kernel_key",
]
