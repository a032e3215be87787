"""The ``kernel`` backend: probing whether AF_ALG ``ctr(aes)`` works here, and opening its
streams.
"""

from __future__ import annotations

from contextlib import closing
from typing import TYPE_CHECKING

from kstream.backends.base import Availability, CipherOptions
from kstream.backends.kernel.drivers import CTR_AES, generic_warning, resolve_driver
from kstream.backends.kernel.sockets import KernelKey, bind_tfm, set_key
from kstream.errors import BackendUnavailable, InvalidKey

if TYPE_CHECKING:
    from kstream.backends.kernel.ctr import KernelStream
    from kstream.backends.kernel.procfs import CryptoAlg
    from kstream.keys.key import Key

# The stream (kstream.backends.kernel.ctr) and /proc/crypto's parser are imported once a
# socket has bound: every ``auto`` run probes, and on a host without AF_ALG (most
# containers) the probe's first call fails, so that run needs neither.

#: The counter-carry known answer: AES-128 under key 00 01 .. 0f, counter blocks
#: ff..fe, ff..ff, 00..00, 00..01, 00..02 (the step from ff..ff to 00..00 carries across the
#: 2^32, 2^64 and 2^96 boundaries and wraps at 2^128 all at once), over 67 zero bytes fed as
#: 17 + 50 (a partial block held back across the crossing). The keystream was computed with
#: OpenSSL's AES-ECB of those explicit counter blocks; ``tests/backends/kernel`` checks it
#: against the independent reference. A driver whose counter is 32, 64 or 96 bits wide gets
#: block 2 wrong.
CARRY_KEY = bytes(range(16))
CARRY_IV = bytes.fromhex("ff" * 15 + "fe")
CARRY_PIECES = (17, 50)
CARRY_KEYSTREAM = bytes.fromhex(
    "b6b5c2d82d8bd40fcf4ed8f4ae6e97ee3c441f32ce07822364d7a2990e50bb13c6a13b37878f5b826f4f81"
    "62a1c8d8797346139595c0b41e497bbde365f42d0a49d687"
)

#: Results of :meth:`KernelBackend.carry_check` in this process, by ``--driver`` (None: the
#: kernel's pick): the check runs once per process and driver, not once per run or range.
_carry_results: dict[str | None, str | None] = {}


def _run_carry_check(driver: str | None) -> str | None:
    from kstream.backends.kernel.ctr import KernelStream

    stream = KernelStream(CARRY_KEY, CARRY_IV, CipherOptions(driver=driver, transfer="sendmsg"))
    name = stream.driver
    try:
        got = b"".join(stream.update(bytes(n)) for n in CARRY_PIECES) + stream.finalize()
    finally:
        stream.close()
    if got == CARRY_KEYSTREAM:
        return None
    first = next(
        (i for i, (a, b) in enumerate(zip(got, CARRY_KEYSTREAM, strict=False)) if a != b),
        min(len(got), len(CARRY_KEYSTREAM)),
    )
    return (
        f"kernel driver {name} failed the counter-carry check (wrong keystream from byte "
        f"{first} of {len(CARRY_KEYSTREAM)}, where the counter wraps from ff..ff to 00..00)"
    )


class KernelBackend:
    """The ``kernel`` backend: AES-CTR computed by the kernel's ``ctr(aes)`` driver."""

    name = "kernel"

    def carry_check(self, options: CipherOptions | None = None) -> str | None:
        """Run the counter-carry known answer on the driver a run is about to use (once per
        process and driver); ``None`` if it passed, else one line naming the driver.

        The file format's tags cover the ciphertext, so a driver that carries the counter
        wrongly (hardware drivers have shipped 32- and 64-bit counter bugs) would write
        files that authenticate here and decrypt to garbage everywhere else. One socket,
        five blocks (what it costs: docs/benchmark.md). A driver that cannot even open a
        stream counts as failed, with the reason.
        """
        driver = options.driver if options is not None else None
        if driver not in _carry_results:
            try:
                _carry_results[driver] = _run_carry_check(driver)
            except BackendUnavailable as exc:
                _carry_results[driver] = (
                    f"kernel driver {driver or CTR_AES} failed the counter-carry check: {exc}"
                )
        return _carry_results[driver]

    def probe(self) -> Availability:
        """Bind ``ctr(aes)`` and set a dummy key on a throwaway socket, as a stream would."""
        try:
            with closing(bind_tfm("skcipher", CTR_AES)) as tfm:
                set_key(tfm, bytes(16), CTR_AES)
        except (BackendUnavailable, InvalidKey) as exc:
            return Availability(self.name, False, str(exc))
        from kstream.backends.kernel.procfs import read_proc_crypto

        pick = resolve_driver(read_proc_crypto(), CTR_AES)
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
        from kstream.backends.kernel.ctr import KernelStream

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
    from kstream.backends.kernel.procfs import implementations, read_proc_crypto

    with closing(bind_tfm("skcipher", CTR_AES)):
        pass
    return implementations(read_proc_crypto(), CTR_AES, "skcipher")


__all__ = ["KernelBackend", "ctr_aes_drivers", "kernel_key"]
