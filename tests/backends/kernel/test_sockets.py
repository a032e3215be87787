"""The AF_ALG edge: what a refused socket, bind or key turns into.

The tests not marked ``kernel`` simulate the kernel's refusals (EAFNOSUPPORT, ENOENT, EINVAL)
at the socket and run on any host; the others meet the real refusals in a kernel with AF_ALG.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from kernelsim import FakeAlgSocket, deny_af_alg, fake_kernel, open_fds

from kstream.backends.base import CipherOptions, Transfer
from kstream.backends.kernel import sockets
from kstream.backends.kernel.backend import KernelBackend, ctr_aes_drivers
from kstream.backends.kernel.ctr import KernelStream
from kstream.backends.kernel.sockets import bind_tfm
from kstream.errors import BackendUnavailable, InvalidKey, UsageError

kernel = pytest.mark.kernel
KEY_SIZES = (16, 24, 32)
TRANSFERS: tuple[Transfer, ...] = ("auto", "sendmsg", "splice", "sendfile")


@pytest.mark.parametrize(
    ("restrict", "expected"),
    [
        (
            None,
            "CONFIG_CRYPTO_USER_API_SKCIPHER off or the af_alg module not loadable, or "
            "af_alg_restrict=2)",
        ),
        (2, "(sysctl crypto.af_alg_restrict=2 disables them; set it to 1 or 0 to allow)"),
        (1, "af_alg module not loadable; crypto.af_alg_restrict=1)"),
    ],
)
def test_eafnosupport_explains(
    monkeypatch: pytest.MonkeyPatch,
    sysctl: Callable[[int | None], None],
    restrict: int | None,
    expected: str,
) -> None:
    sysctl(restrict)
    deny_af_alg(monkeypatch)
    status = KernelBackend().probe()
    assert not status.available
    assert status.reason.startswith("this kernel has no AF_ALG sockets")
    assert status.reason.endswith(expected)
    with pytest.raises(BackendUnavailable) as raised:
        KernelStream(bytes(16), bytes(16))
    assert str(raised.value) == status.reason


def test_enoent_at_bind_explains(
    monkeypatch: pytest.MonkeyPatch, sysctl: Callable[[int | None], None]
) -> None:
    fake_kernel(monkeypatch, bind_errno=errno.ENOENT)
    sysctl(None)
    with pytest.raises(BackendUnavailable) as raised:
        KernelStream(bytes(16), bytes(16))
    assert str(raised.value) == (
        "the kernel refused skcipher 'ctr(aes)' for AF_ALG (module algif_skcipher or the "
        "algorithm's module missing)"
    )
    sysctl(1)
    monkeypatch.setattr(sockets, "af_alg_privileged", lambda: False)
    status = KernelBackend().probe()
    assert not status.available
    assert status.reason == (  # one line, both ways out
        "crypto.af_alg_restrict=1 lets only processes with CAP_NET_ADMIN bind skcipher "
        "'ctr(aes)' (run as root or from a systemd unit with AmbientCapabilities=CAP_NET_ADMIN, "
        "or set sysctl crypto.af_alg_restrict=0)"
    )
    monkeypatch.setattr(sockets, "af_alg_privileged", lambda: True)
    assert (
        KernelBackend()
        .probe()
        .reason.endswith(
            "missing, or not on af_alg_restrict=1's allowlist (set sysctl "
            "crypto.af_alg_restrict=0))"
        )
    )
    assert all(sock.closed for sock in FakeAlgSocket.instances)
    assert len(FakeAlgSocket.instances) == 3  # one per attempt: none left open


def test_unknown_driver_lists_the_available_ones(
    monkeypatch: pytest.MonkeyPatch, sysctl: Callable[[int | None], None]
) -> None:
    fake_kernel(monkeypatch, bind_errno=errno.ENOENT)
    sysctl(None)
    with pytest.raises(BackendUnavailable) as raised:
        KernelStream(bytes(16), bytes(16), CipherOptions(driver="ctr-aes-vaes-avx512"))
    assert str(raised.value) == (
        "the kernel has no ctr(aes) driver 'ctr-aes-vaes-avx512' for AF_ALG; available: "
        "ctr-aes-aesni, ctr(aes-aesni), ctr(aes-generic)"
    )
    assert FakeAlgSocket.instances[0].closed


def test_key_refused_at_setkey(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_kernel(monkeypatch, setkey_errno=errno.EINVAL)
    with pytest.raises(InvalidKey) as raised:
        KernelStream(bytes(20), bytes(16))
    assert str(raised.value) == (
        "the kernel's ctr-aes-aesni refused a 20-byte key; an AES key must be 16, 24 or 32 bytes"
    )
    assert FakeAlgSocket.instances[0].closed
    status = KernelBackend().probe()  # probe's dummy key refused: not usable either
    assert not status.available and "refused a 16-byte key" in status.reason


def test_other_setkey_errors_are_not_called_key_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_kernel(monkeypatch, setkey_errno=errno.ENOMEM)
    with pytest.raises(BackendUnavailable, match="could not take the key: Cannot allocate"):
        KernelStream(bytes(16), bytes(16))


# -- in a kernel with AF_ALG --------------------------------------------------------------------


@kernel
@pytest.mark.parametrize("size", [0, 1, 15, 17, 31, 33, 64])
def test_bad_key_length_is_a_clear_error(size: int) -> None:
    before = open_fds()
    with pytest.raises(InvalidKey) as raised:
        KernelStream(os.urandom(size), bytes(16))
    assert str(raised.value).endswith(
        f"refused a {size}-byte key; an AES key must be 16, 24 or 32 bytes"
    )
    # ctr(aes-generic) in UML, ctr-aes-aesni-avx and the like on real hardware
    assert str(raised.value).startswith("the kernel's ctr")
    assert open_fds() == before


@kernel
def test_unknown_driver_is_a_clear_error() -> None:
    before = open_fds()
    pick = ctr_aes_drivers()[0]
    with pytest.raises(BackendUnavailable) as raised:
        KernelStream(bytes(16), bytes(16), CipherOptions(driver="ctr-aes-nonexistent"))
    message = str(raised.value)
    assert message.startswith("the kernel has no ctr(aes) driver 'ctr-aes-nonexistent'")
    assert f"available: {pick.driver}" in message
    with pytest.raises(UsageError, match=r"^'x{80}' is not a valid kernel crypto algorithm name"):
        KernelStream(bytes(16), bytes(16), CipherOptions(driver="x" * 80))
    assert open_fds() == before


@kernel
def test_a_missing_algorithm_is_explained() -> None:
    with pytest.raises(BackendUnavailable) as raised:
        bind_tfm("skcipher", "ctr(no-such-cipher)")
    assert str(raised.value).startswith(
        "the kernel refused skcipher 'ctr(no-such-cipher)' for AF_ALG (module algif_skcipher"
    )


def test_cap_net_admin_is_read_from_the_effective_set(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tx\nCapInh:\t0000000000001000\nCapEff:\t0000000000000000\n")
    assert sockets.has_net_admin(str(status)) is False
    status.write_text("CapEff:\t000001ffffffffff\n")
    assert sockets.has_net_admin(str(status)) is True
    status.write_text("CapEff:\t0000000000001000\n")  # bit 12 alone
    assert sockets.has_net_admin(str(status)) is True
    assert sockets.has_net_admin(str(tmp_path / "missing")) is None


def test_af_alg_privilege_is_cap_net_admin_or_cap_sys_admin(tmp_path: Path) -> None:
    """What af_alg_restrict=1 counts as privileged: either capability, effective."""
    status = tmp_path / "status"
    for caps, privileged in (
        ("0000000000000000", False),
        ("0000000000001000", True),  # CAP_NET_ADMIN, as a systemd unit's ambient set gives
        ("0000000000200000", True),  # CAP_SYS_ADMIN
        ("0000000000003000", True),
        ("00000000000000ff", False),
    ):
        status.write_text(f"CapInh:\t000001ffffffffff\nCapEff:\t{caps}\n")
        assert sockets.af_alg_privileged(str(status)) is privileged, caps
    assert sockets.af_alg_privileged(str(tmp_path / "missing")) is None


def test_a_driver_by_name_under_af_alg_restrict_1(
    monkeypatch: pytest.MonkeyPatch, sysctl: Callable[[int | None], None]
) -> None:
    """Linux 7.3's allowlist holds algorithm names: a listed driver named by --driver is
    refused even to root, which the error says instead of "no such driver"."""
    fake_kernel(monkeypatch, bind_errno=errno.ENOENT)
    sysctl(1)
    monkeypatch.setattr(sockets, "af_alg_privileged", lambda: True)
    with pytest.raises(BackendUnavailable) as raised:
        KernelStream(bytes(16), bytes(16), CipherOptions(driver="ctr-aes-aesni"))
    assert str(raised.value) == (
        "crypto.af_alg_restrict=1 refuses ctr(aes) drivers by name, even to root: leave out "
        "--driver to use the kernel's pick, or set sysctl crypto.af_alg_restrict=0"
    )
    sysctl(0)
    with pytest.raises(BackendUnavailable) as raised:
        KernelStream(bytes(16), bytes(16), CipherOptions(driver="ctr-aes-aesni"))
    assert str(raised.value).startswith("the kernel has no ctr(aes) driver 'ctr-aes-aesni'")
