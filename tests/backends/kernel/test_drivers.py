"""Which ``ctr(aes)`` drivers are the slow generic template."""

from __future__ import annotations

import pytest

from kstream.backends.base import Transfer
from kstream.backends.kernel.drivers import generic_warning, template_cipher

kernel = pytest.mark.kernel
KEY_SIZES = (16, 24, 32)
TRANSFERS: tuple[Transfer, ...] = ("auto", "sendmsg", "splice", "sendfile")


def test_generic_driver_detection() -> None:
    assert template_cipher("ctr(aes-generic)") == "aes-generic"
    assert template_cipher("ctr(ecb(aes-lib))") == "ecb(aes-lib)"
    assert template_cipher("ctr-aes-aesni") is None
    assert generic_warning("ctr-aes-aesni") is None
    assert generic_warning("ctr-aes-ce") is None
    generic = generic_warning("ctr(aes-generic)")
    assert generic is not None and "portable C, no AES instructions" in generic
    lib = generic_warning("ctr(aes-lib)")
    assert lib is not None and "no dedicated ctr(aes) driver" in lib
