"""Which kernel implementation (driver) of ``ctr(aes)`` kstream gets, and whether it is fast.

AF_ALG cannot say which implementation a bound socket uses, so these answers come from
``/proc/crypto`` read with the kernel's own rules. They open no sockets: binding (which is
what makes the kernel build a template instance such as ``ctr(aes-generic)``) happens in
:mod:`kstream.backends.kernel.sockets` and above.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kstream.backends.kernel.procfs import CryptoAlg

# procfs is imported where /proc/crypto is read: the probe of every ``auto`` run binds
# CTR_AES first, and on a host without AF_ALG it never gets further.

#: The algorithm name every kstream stream binds unless the user names a driver.
CTR_AES = "ctr(aes)"

#: Single-block AES ciphers that are portable C code (no AES instructions at all).
_C_CIPHERS = frozenset({"aes-generic", "aes-fixed-time"})


def available_ctr_aes_drivers(algs: list[CryptoAlg] | None = None) -> list[str]:
    """Driver names that ``--driver`` accepts here: registered ``ctr(aes)`` implementations,
    best first, then ``ctr(X)`` for each loaded AES cipher ``X`` (the ``ctr`` template builds
    those on first use, so they are valid even before they show up as ``ctr(aes)``)."""
    from kstream.backends.kernel.procfs import implementations, read_proc_crypto

    algs = read_proc_crypto() if algs is None else algs
    names = [alg.driver for alg in implementations(algs, CTR_AES, "skcipher")]
    for cipher in implementations(algs, "aes", "cipher"):
        candidate = f"ctr({cipher.driver})"
        if candidate not in names:
            names.append(candidate)
    return names


def resolve_driver(algs: list[CryptoAlg], bound: str) -> CryptoAlg | None:
    """The ``/proc/crypto`` entry a socket bound to ``bound`` most likely uses.

    AF_ALG cannot tell which implementation it got; the kernel's rule (exact driver name,
    else highest priority for the name) applied to ``/proc/crypto`` right after the bind is
    the best available answer.
    """
    from kstream.backends.kernel.procfs import kernel_pick

    return kernel_pick(algs, bound, "skcipher")


def template_cipher(driver: str) -> str | None:
    """For a ``ctr`` template instance such as ``ctr(aes-generic)``, the cipher inside it.

    A ``ctr(X)`` driver is the generic ``ctr`` template wrapped around the single-block cipher
    ``X``: one block per call, no dedicated (AES-NI, ARMv8-CE, ...) ``ctr(aes)`` code. Correct,
    but several times slower than OpenSSL, which makes the kernel path a poor default.
    """
    if len(driver) > 5 and driver.startswith("ctr(") and driver.endswith(")"):
        return driver[4:-1]
    return None


def generic_warning(driver: str) -> str | None:
    """A one-line warning when ``driver`` is the slow generic template, else ``None``."""
    cipher = template_cipher(driver)
    if cipher is None:
        return None
    if cipher in _C_CIPHERS:
        return (
            f"only the generic ctr template over {cipher} (portable C, no AES instructions): "
            "slower than openssl"
        )
    return (
        f"only the generic ctr template over {cipher} (one block per call, no dedicated "
        "ctr(aes) driver): likely slower than openssl"
    )


__all__ = [
    "CTR_AES",
    "available_ctr_aes_drivers",
    "generic_warning",
    "resolve_driver",
    "template_cipher",
]
