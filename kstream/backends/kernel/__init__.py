"""The kernel backend: AES-CTR through the Linux kernel crypto API (AF_ALG).

Modules import one way only, each from those before it:
:mod:`~.procfs` (``/proc/crypto``) < :mod:`~.drivers` (which implementation, how fast) <
:mod:`~.sockets` (the AF_ALG edge: bind, key, errors) < :mod:`~.ctr` (the stream and its
transfers), :mod:`~.ecb_ctr` (the ``--verify`` reference), :mod:`~.hmac` (MAC keys from
keyring keys) < :mod:`~.backend` (probe and open) < :mod:`~.diagnosis` (``kstream backends``).

The names below are what the rest of kstream needs; the diagnosis is imported from its module.
"""

from __future__ import annotations

from kstream.backends.kernel.backend import KernelBackend, ctr_aes_drivers, kernel_key
from kstream.backends.kernel.ctr import AUTO_FD_TRANSFER, KernelStream, fd_kind
from kstream.backends.kernel.drivers import CTR_AES, generic_warning
from kstream.backends.kernel.ecb_ctr import KernelEcbCtrStream
from kstream.backends.kernel.hmac import kernel_hmac_sha256
from kstream.backends.kernel.sockets import KernelKey

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
