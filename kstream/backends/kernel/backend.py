"""The ``kernel`` backend: probing whether AF_ALG ``ctr(aes)`` works here, and opening its
streams.
"""

from __future__ import annotations

from contextlib import closing
from typing import TYPE_CHECKING

from kstream.backends.base import Availability, CipherOptions
from kstream.backends.kernel import procfs
from kstream.backends.kernel.ctr import KernelStream
from kstream.backends.kernel.drivers import CTR_AES, generic_warning, resolve_driver
from kstream.backends.kernel.procfs import CryptoAlg, implementations
from kstream.backends.kernel.sockets import KernelKey, bind_tfm, set_key
from kstream.errors import BackendUnavailable, InvalidKey

if TYPE_CHECKING:
    from kstream.keys import Key

class KernelBackend:
    """The ``kernel`` backend: AES-CTR computed by the kernel's ``ctr(aes)`` driver."""

    name = "kernel"

    def probe(self) -> Availability:
        """Bind ``ctr(aes)`` and set a dummy key on a throwaway socket, as a stream would."""
        try:
            with closing(bind_tfm("skcipher", CTR_AES)) as tfm:
                set_key(tfm, bytes(16), CTR_AES)
        except (BackendUnavailable, InvalidKey) as exc:
            return Availability(self.name, False, str(exc))
        pick = resolve_driver(procfs.read_proc_crypto(), CTR_AES)
        if pick is None:
            return Availability(
                self.name,
                True,
                f"{CTR_AES} through AF_ALG (driver not listed in /proc/crypto)",
                {"driver": None},
            )
        warning = generic_warning(pick.driver)
        details: dict[str, object] = {
            "driver": pick.driver,
            "priority": pick.priority,
            "module": pick.module,
            "async": pick.is_async,
            "generic_only": warning is not None,
        }
        reason = f"{CTR_AES} through AF_ALG, driver {pick.driver} (priority {pick.priority})"
        if warning is not None:
            details["warning"] = warning
            reason += f"; {warning}"
        return Availability(self.name, True, reason, details)

    def open(self, key: Key, iv: bytes, options: CipherOptions | None = None) -> KernelStream:
        return KernelStream(kernel_key(key), iv, options)


def kernel_key(key: Key) -> KernelKey:
    """What the kernel is keyed with: a keyring key's serial (never its bytes), else bytes."""
    ref = key.keyring_ref
    return ref if ref is not None else key.material()


def ctr_aes_drivers() -> list[CryptoAlg]:
    """Every usable ``ctr(aes)`` implementation, the kernel's pick first.

    Binds ``ctr(aes)`` once first, so that the kernel's default instance is listed even on a
    system where nothing has used it yet; does not build other instances.
    """
    with closing(bind_tfm("skcipher", CTR_AES)):
        pass
    return implementations(procfs.read_proc_crypto(), CTR_AES, "skcipher")


__all__ = ["KernelBackend", "ctr_aes_drivers", "kernel_key"]
