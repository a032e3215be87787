"""HMAC-SHA256 computed by the kernel, for keys that must not enter this process.

A keyring key is handed to AF_ALG by serial; the kernel hashes with it and only the digest
comes back. kstream derives an authenticated file's MAC key this way when the cipher key
lives in the keyring.
"""

from __future__ import annotations

from contextlib import closing

from kstream.backends.kernel.sockets import KernelKey, bind_tfm, kernel_failure, set_key
from kstream.errors import BackendUnavailable

HMAC_SHA256 = "hmac(sha256)"


def kernel_hmac_sha256(key: KernelKey, data: bytes) -> bytes:
    """HMAC-SHA256(key, data) computed by the kernel (an AF_ALG ``hash`` socket).

    With a keyring key this is how kstream derives a file's MAC key without the user's key
    ever entering the process (measured: ``hmac(sha256)`` takes keys by serial on 6.12 and
    7.2). Only the 32-byte result comes back.
    """
    with closing(bind_tfm("hash", HMAC_SHA256)) as tfm:
        set_key(tfm, key, HMAC_SHA256)
        try:
            op, _ = tfm.accept()
        except OSError as exc:
            raise kernel_failure("starting the hash", exc) from exc
        with op:
            try:
                op.sendall(data)
                digest = op.recv(32)
            except OSError as exc:
                raise kernel_failure("computing the MAC key", exc) from exc
    if len(digest) != 32:
        raise BackendUnavailable(
            f"the kernel's {HMAC_SHA256} returned {len(digest)} bytes instead of 32"
        )
    return digest


__all__ = ["HMAC_SHA256", "kernel_hmac_sha256"]
