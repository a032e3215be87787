"""The drivers users get on x86: in QEMU (``-cpu max``) Debian's kernels have the real AES-NI
``ctr(aes)`` drivers, which UML never has; kstream must pick, name and check them."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from kstream.backends.base import CipherOptions
from kstream.backends.kernel import KernelBackend, KernelStream, ctr_aes_drivers, generic_warning
from kstream.backends.kernel.sockets import drivers_by_name_refused

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(
        os.environ.get("KSTREAM_IN_QEMU") != "1", reason="UML has only the generic C AES"
    ),
]


def kernel_version() -> tuple[int, int]:
    major, minor = os.environ["KSTREAM_QEMU_KERNEL"].split(".")
    return int(major), int(minor)


def test_the_aes_ni_drivers_are_there_and_picked() -> None:
    try:
        drivers = [alg.driver for alg in ctr_aes_drivers()]
    except Exception as exc:  # e.g. nobody under af_alg_restrict=1: test_policy covers that
        pytest.skip(f"the kernel path is not this process's: {exc}")
    assert "ctr-aes-aesni" in drivers, drivers
    if kernel_version() >= (7, 2):
        assert drivers[0] == "ctr-aes-aesni-avx", drivers  # priority 500 over -aesni's 400
    else:
        assert drivers[0] == "ctr-aes-aesni", drivers
    assert generic_warning(drivers[0]) is None
    status = KernelBackend().probe()
    assert status.available and status.details["driver"] == drivers[0]


def test_every_aes_ni_driver_equals_openssl_and_carries() -> None:
    """Each AES-NI driver by name (the pick through ctr(aes) where names are refused):
    OpenSSL's bytes across the 2^64 carry, and kstream's carry check passes."""
    try:
        drivers = [a.driver for a in ctr_aes_drivers() if a.driver.startswith("ctr-aes-aesni")]
    except Exception as exc:
        pytest.skip(f"the kernel path is not this process's: {exc}")
    names: list[str | None] = [None] if drivers_by_name_refused() else list(drivers)
    key, data = os.urandom(32), os.urandom(100_003)
    iv = bytes.fromhex("00000000000000fffffffffffffffff0")  # crosses 2^64 after 16 blocks
    enc = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    expected = enc.update(data) + enc.finalize()
    for name in names:
        stream = KernelStream(key, iv, CipherOptions(driver=name))
        assert stream.description.startswith("kernel ctr-aes-aesni"), stream.description
        assert stream.update(data) + stream.finalize() == expected, name
        assert KernelBackend().carry_check(CipherOptions(driver=name)) is None
