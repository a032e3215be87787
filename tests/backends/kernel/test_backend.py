"""The kernel backend's probe: what it reports on a host without AF_ALG, on a simulated
AES-NI kernel, and in a real kernel."""

from __future__ import annotations

import pytest
from kernelsim import FakeAlgSocket, fake_kernel, host_has_af_alg

from kstream.backends.base import Transfer
from kstream.backends.kernel.backend import KernelBackend
from kstream.backends.kernel.procfs import kernel_pick, read_proc_crypto
from kstream.errors import BackendUnavailable
from kstream.keys.key import Key

kernel = pytest.mark.kernel
KEY_SIZES = (16, 24, 32)
TRANSFERS: tuple[Transfer, ...] = ("auto", "sendmsg", "splice", "sendfile")


@pytest.mark.skipif(host_has_af_alg(), reason="this host has AF_ALG")
def test_probe_on_a_host_without_af_alg() -> None:
    status = KernelBackend().probe()
    assert not status.available
    assert status.reason.startswith("this kernel has no AF_ALG sockets (")
    with pytest.raises(BackendUnavailable, match="^this kernel has no AF_ALG sockets"):
        KernelBackend().open(Key(bytes(16)), bytes(16))


def test_probe_details_on_a_simulated_aesni_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_kernel(monkeypatch)
    status = KernelBackend().probe()
    assert status.available
    assert status.reason == "ctr(aes) through AF_ALG, driver ctr-aes-aesni (priority 400)"
    assert status.details == {
        "driver": "ctr-aes-aesni",
        "priority": 400,
        "module": "aesni_intel",
        "async": True,
        "generic_only": False,
    }
    assert all(sock.closed for sock in FakeAlgSocket.instances)


# -- in a kernel with AF_ALG --------------------------------------------------------------------


@kernel
def test_probe_names_the_kernels_pick() -> None:
    status = KernelBackend().probe()
    assert status.available, status.reason
    pick = kernel_pick(read_proc_crypto(), "ctr(aes)", "skcipher")
    assert pick is not None
    assert status.details["driver"] == pick.driver
    assert f"driver {pick.driver} (priority {pick.priority})" in status.reason
    stream = KernelBackend().open(Key(bytes(16)), bytes(16))
    assert stream.description == f"kernel {pick.driver}"
    stream.close()
