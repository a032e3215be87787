"""Kernel tests that prove the harness reaches a real AF_ALG, with no kstream code involved.

They speak to the kernel with raw socket calls and check it against NIST SP 800-38A and against
OpenSSL (``cryptography``), so a harness that silently skipped, or ran them somewhere without
AF_ALG, could not pass them.
"""

from __future__ import annotations

import os
import socket

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

pytestmark = pytest.mark.kernel


def refused_to_this_process() -> bool:
    """Whether ``crypto.af_alg_restrict=1`` keeps ``ctr(aes)`` from this (unprivileged)
    process, as Linux 7.3 does by default; tests/kernel/test_policy.py checks that case."""
    try:
        with socket.socket(socket.AF_ALG, socket.SOCK_SEQPACKET) as tfm:
            tfm.bind(("skcipher", "ctr(aes)"))
    except OSError:
        try:
            with open("/proc/sys/crypto/af_alg_restrict") as f:
                return f.read().strip() == "1" and os.geteuid() != 0
        except OSError:
            return False
    return False


allowed = pytest.mark.skipif(
    refused_to_this_process(),
    reason="af_alg_restrict=1 refuses ctr(aes) to this process (see tests/kernel/test_policy.py)",
)

# NIST SP 800-38A, F.5.1 CTR-AES128.Encrypt
KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
COUNTER = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
PLAINTEXT = bytes.fromhex(
    "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"
)
CIPHERTEXT = bytes.fromhex(
    "874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff"
    "5ae4df3edbd5d35e5b4f09020db03eab1e031dda2fbe03d1792170a0f3009cee"
)


def afalg_ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    """One-shot ``ctr(aes)`` through AF_ALG: bind, set the key, send op+IV+data, read back."""
    with socket.socket(socket.AF_ALG, socket.SOCK_SEQPACKET) as tfm:
        tfm.bind(("skcipher", "ctr(aes)"))
        tfm.setsockopt(socket.SOL_ALG, socket.ALG_SET_KEY, key)
        op, _ = tfm.accept()
        with op:
            op.sendmsg_afalg([data], op=socket.ALG_OP_ENCRYPT, iv=iv)
            out = bytearray()
            while len(out) < len(data):
                chunk = op.recv(len(data) - len(out))
                assert chunk, "AF_ALG returned EOF early"
                out += chunk
            return bytes(out)


def openssl_ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


@allowed
def test_nist_sp800_38a_f51_vector() -> None:
    assert afalg_ctr(KEY, COUNTER, PLAINTEXT) == CIPHERTEXT


@allowed
@pytest.mark.parametrize("size", [1, 16, 1000, 65536])
@pytest.mark.parametrize("key_bits", [128, 256])
def test_matches_openssl_on_random_data(size: int, key_bits: int) -> None:
    key, iv, data = os.urandom(key_bits // 8), os.urandom(16), os.urandom(size)
    assert afalg_ctr(key, iv, data) == openssl_ctr(key, iv, data)


def test_runs_where_expected() -> None:
    """Inside UML or QEMU the harness names the kernel (and in QEMU the user); the release
    and this process's user must match them."""
    release = os.uname().release
    if os.environ.get("KSTREAM_IN_QEMU") == "1":
        vm_kernel = os.environ["KSTREAM_QEMU_KERNEL"]
        assert release.startswith((vm_kernel + ".", vm_kernel + "-")), release  # 7.3-amd64
        user = os.environ["KSTREAM_QEMU_USER"]
        assert (os.geteuid(), os.getegid()) == ((0, 0) if user == "root" else (65534, 65534))
        return
    name = os.environ.get("KSTREAM_UML_KERNEL")
    if os.environ.get("KSTREAM_IN_UML") == "1":
        assert name is not None
        assert release.startswith(name + ".")
    else:
        assert name is None  # native run on a host with AF_ALG
