"""The counter-carry known answer that ``auto`` and ``kernel`` run on the driver they are
about to use: its constant, what a wrong driver leads to (a stream with a 32-bit counter
injected on the host, and real drivers made to skip the carry in UML), and that it runs
once per process."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from kernelsim import host_has_af_alg
from reference import ctr

from kstream.backends.base import Availability, CipherOptions
from kstream.backends.kernel import backend as backend_module
from kstream.backends.kernel import ctr as ctr_module
from kstream.backends.kernel.backend import (
    CARRY_IV,
    CARRY_KEY,
    CARRY_KEYSTREAM,
    CARRY_PIECES,
    KernelBackend,
    ctr_aes_drivers,
)
from kstream.backends.kernel.ctr import KernelStream
from kstream.backends.kernel.sockets import drivers_by_name_refused
from kstream.backends.select import FALLBACK_NOTICE, select_backend
from kstream.errors import BackendUnavailable, UsageError

kernel = pytest.mark.kernel
#: Where a 32-bit counter goes after ff..ff: only the low word wraps.
WRONG_AFTER_WRAP = bytes.fromhex("ff" * 12 + "00000000")


def test_the_constant_is_ctr_of_zeros_by_the_reference() -> None:
    assert ctr(CARRY_KEY, CARRY_IV, bytes(sum(CARRY_PIECES))) == CARRY_KEYSTREAM
    assert sum(CARRY_PIECES) % 16 and CARRY_PIECES[0] % 16  # odd pieces, partial end
    assert int.from_bytes(CARRY_IV, "big") + len(CARRY_KEYSTREAM) // 16 >= 1 << 128


class FakeDriverStream:
    """A stand-in for :class:`KernelStream` on a host without AF_ALG: CTR by the
    reference, correct or with a 32-bit counter (the block after ff..ff is wrong)."""

    opened: ClassVar[list[str | None]] = []

    def __init__(
        self, key: bytes, iv: bytes, options: CipherOptions | None = None, *, carry_bug: bool
    ) -> None:
        self.key, self.iv, self.carry_bug = key, iv, carry_bug
        self.driver = options.driver if options and options.driver else "ctr-aes-fake"
        self.data = bytearray()
        FakeDriverStream.opened.append(self.driver)

    def update(self, data: bytes) -> bytes:
        self.data += data
        return b""

    def finalize(self) -> bytes:
        good = ctr(self.key, self.iv, bytes(self.data))
        if not self.carry_bug:
            return good
        return good[:32] + ctr(self.key, WRONG_AFTER_WRAP, bytes(self.data[32:]))

    def close(self) -> None:
        pass


@pytest.fixture
def fake_driver(monkeypatch: pytest.MonkeyPatch) -> Callable[[bool], None]:
    """A kernel backend that probes fine and whose driver is correct or carries wrongly."""
    monkeypatch.setattr(backend_module, "_carry_results", {})
    monkeypatch.setattr(
        KernelBackend,
        "probe",
        lambda self: Availability(
            "kernel", True, "ctr(aes) through AF_ALG, driver ctr-aes-fake (test)"
        ),
    )
    FakeDriverStream.opened = []

    def install(carry_bug: bool) -> None:
        def make(key: bytes, iv: bytes, options: CipherOptions | None = None) -> Any:
            return FakeDriverStream(key, iv, options, carry_bug=carry_bug)

        monkeypatch.setattr(ctr_module, "KernelStream", make)  # the backend imports it when used

    return install


def test_a_correct_driver_passes_and_is_checked_once_per_process(
    fake_driver: Callable[[bool], None],
) -> None:
    fake_driver(False)
    notices: list[str] = []
    for _ in range(3):
        assert select_backend("auto", notices.append).name == "kernel"
        assert select_backend("kernel").name == "kernel"
    assert notices == []
    assert FakeDriverStream.opened == ["ctr-aes-fake"]
    select_backend("kernel", options=CipherOptions(driver="ctr-aes-other"))
    assert FakeDriverStream.opened == ["ctr-aes-fake", "ctr-aes-other"]  # per driver


def test_auto_falls_back_to_openssl_naming_the_driver(fake_driver: Callable[[bool], None]) -> None:
    fake_driver(True)
    notices: list[str] = []
    assert select_backend("auto", notices.append).name == "openssl"
    assert notices == [
        "kernel backend unavailable (kernel driver ctr-aes-fake failed the counter-carry "
        "check (wrong keystream from byte 32 of 67, where the counter wraps from ff..ff to "
        "00..00)); using openssl"
    ]


def test_auto_with_a_named_driver_stops_as_kernel_does(fake_driver: Callable[[bool], None]) -> None:
    """A driver the user named is not swapped for OpenSSL in silence."""
    fake_driver(True)
    notices: list[str] = []
    with pytest.raises(
        BackendUnavailable,
        match=r"^kernel driver ctr-aes-x failed the "
        r"counter-carry check \(wrong keystream from byte 32 of 67, .*\); use "
        r'another options=CipherOptions\(driver=\.\.\.\) or backend="openssl"$',
    ):
        select_backend("auto", notices.append, CipherOptions(driver="ctr-aes-x"))
    assert notices == []


def test_a_driver_that_would_not_be_used_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        KernelBackend,
        "probe",
        lambda self: Availability("kernel", False, "this kernel has no AF_ALG sockets (test)"),
    )
    notices: list[str] = []
    with pytest.raises(
        UsageError,
        match=r"^driver=ctr-aes-x cannot be used: the kernel "
        r"backend is not available here; see 'kstream backends'$",
    ):
        select_backend("auto", notices.append, CipherOptions(driver="ctr-aes-x"))
    with pytest.raises(
        UsageError,
        match=r"^driver=ctr-aes-x cannot be used: openssl does "
        r"not use kernel drivers$",
    ):
        select_backend("openssl", notices.append, CipherOptions(driver="ctr-aes-x"))
    assert notices == []
    assert select_backend("auto", notices.append, CipherOptions()).name == "openssl"
    assert select_backend("openssl", notices.append, CipherOptions()).name == "openssl"
    assert notices == [FALLBACK_NOTICE]
    assert len(FALLBACK_NOTICE) <= 80 and "'kstream backends'" in FALLBACK_NOTICE


def test_kernel_stops_with_an_error_naming_the_driver(fake_driver: Callable[[bool], None]) -> None:
    fake_driver(True)
    with pytest.raises(
        BackendUnavailable,
        match=r"^kernel driver ctr-aes-x failed the "
        r"counter-carry check \(wrong keystream from byte 32 of 67, .*\); use "
        r'another options=CipherOptions\(driver=\.\.\.\) or backend="openssl"$',
    ):
        select_backend("kernel", options=CipherOptions(driver="ctr-aes-x"))


# --------------------------------------------------------------------------- real drivers


class SkipsTheCarry:
    """Real kernel streams that behave like a driver with a 32-bit counter: the output up
    to the wrap comes from the driver at the right counter, the rest from the same driver
    restarted where a 32-bit counter would be."""

    def __init__(self, key: bytes, iv: bytes, options: CipherOptions | None = None) -> None:
        self.key, self.iv, self.options = key, iv, options
        probe = KernelStream(key, iv, options)
        self.driver = probe.driver
        probe.close()
        self.data = bytearray()

    def update(self, data: bytes) -> bytes:
        self.data += data
        return b""

    def _run(self, iv: bytes, data: bytes) -> bytes:
        stream = KernelStream(self.key, iv, self.options)
        return stream.update(data) + stream.finalize()

    def finalize(self) -> bytes:
        return self._run(self.iv, bytes(self.data[:32])) + self._run(
            WRONG_AFTER_WRAP, bytes(self.data[32:])
        )

    def close(self) -> None:
        pass


@kernel
def test_every_real_driver_passes_and_the_check_costs_little(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drivers = [alg.driver for alg in ctr_aes_drivers()]
    assert drivers
    if drivers_by_name_refused():  # Linux 7.3's default: only the pick, through ctr(aes)
        for driver in drivers:
            monkeypatch.setattr(backend_module, "_carry_results", {})
            failure = KernelBackend().carry_check(CipherOptions(driver=driver))
            assert failure is not None and "refuses ctr(aes) drivers by name" in failure
        drivers = [None]  # type: ignore[list-item]
    for driver in drivers:
        monkeypatch.setattr(backend_module, "_carry_results", {})
        start = time.perf_counter()
        assert KernelBackend().carry_check(CipherOptions(driver=driver)) is None
        elapsed = time.perf_counter() - start
        assert elapsed < 0.05
    monkeypatch.setattr(backend_module, "_carry_results", {})
    assert select_backend("kernel").name == "kernel"


@kernel
def test_a_real_driver_that_skips_the_carry_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ctr_module, "KernelStream", SkipsTheCarry)
    for driver in [alg.driver for alg in ctr_aes_drivers()]:
        monkeypatch.setattr(backend_module, "_carry_results", {})
        with pytest.raises(BackendUnavailable, match=f"^kernel driver {re.escape(driver)} failed"):
            select_backend("auto", options=CipherOptions(driver=driver))
        with pytest.raises(BackendUnavailable, match=f"^kernel driver {re.escape(driver)} failed"):
            select_backend("kernel", options=CipherOptions(driver=driver))


@pytest.mark.skipif(host_has_af_alg(), reason="this host has AF_ALG")
def test_no_check_without_af_alg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend_module, "_carry_results", {})
    notices: list[str] = []
    assert select_backend("auto", notices.append).name == "openssl"
    assert backend_module._carry_results == {}
    assert notices == [FALLBACK_NOTICE]
