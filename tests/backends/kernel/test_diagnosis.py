"""``kstream backends``: the report and its text, on simulated kernels (host side).

The kernel is simulated at the narrowest seams: the bind result (``bind_errno``), the
/proc/crypto text (``read_proc_crypto``), the af_alg_restrict sysctl file, the kernel
backend's probe and, for key-by-serial, the socket module. Everything else runs for real.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import socket
import struct
from pathlib import Path
from typing import Any

import pytest
from kernelsim import AESNI, UML_6_1, UML_7_2, deny_af_alg, host_has_af_alg, kernel_version

from kstream.backends.base import Availability
from kstream.backends.kernel import diagnosis, procfs, sockets
from kstream.backends.kernel.backend import KernelBackend
from kstream.backends.kernel.diagnosis import key_by_serial_support
from kstream.backends.kernel.procfs import parse_proc_crypto
from kstream.backends.report import backends_report, format_backends_text


def simulate(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    *,
    proc_crypto: str,
    binds: dict[str, int],
    restrict: int | None = None,
    kernel_available: bool = True,
    serial: dict[str, Any] | None = None,
    af_alg: int = 0,
) -> None:
    """A kernel whose binds end with ``binds[name]`` (an errno, 0 for success), and whose
    ``socket(AF_ALG)`` fails with ``af_alg`` (0: it works). Without ``serial`` the real
    key-by-serial check runs, which without AF_ALG needs no socket to answer."""
    algs = parse_proc_crypto(proc_crypto)
    monkeypatch.setattr(procfs, "read_proc_crypto", lambda: algs)
    monkeypatch.setattr(
        diagnosis, "bind_errno", lambda socket_type, name: binds.get(name, errno.ENOENT)
    )
    monkeypatch.setattr(diagnosis, "af_alg_socket_errno", lambda: af_alg)
    sysctl = tmp_path / "af_alg_restrict"
    if restrict is not None:
        sysctl.write_text(f"{restrict}\n")
    monkeypatch.setattr(sockets, "AF_ALG_RESTRICT", str(sysctl))
    reason = "simulated kernel" if kernel_available else "simulated: no AF_ALG"
    monkeypatch.setattr(
        KernelBackend, "probe", lambda self: Availability("kernel", kernel_available, reason)
    )
    # The simulated kernel computes nothing: its driver passes the counter-carry check.
    monkeypatch.setattr(KernelBackend, "carry_check", lambda self, options=None: None)
    if serial is not None:
        monkeypatch.setattr(diagnosis, "key_by_serial_support", lambda: serial)


SERIAL_OK = {"supported": True, "how": "probe", "detail": "serial 0 gave ENOKEY"}
SERIAL_NO = {"supported": False, "how": "probe", "detail": "serial 0 gave ENOPROTOOPT"}
OK_BINDS = {"ctr(aes)": 0, "hmac(sha256)": 0}


def test_aesni_kernel_report(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    simulate(monkeypatch, tmp_path, proc_crypto=AESNI, binds=OK_BINDS, serial=SERIAL_OK)
    report = backends_report()
    assert json.loads(json.dumps(report)) == report  # JSON-able as it is
    assert [(b["name"], b["available"]) for b in report["backends"]] == [
        ("kernel", True),
        ("openssl", True),
    ]
    assert report["backends"][0]["reason"] == "simulated kernel"
    assert report["auto"] == "kernel"
    ctr, hmac = report["algorithms"]
    assert (ctr["name"], ctr["socket_type"], ctr["bind"]) == ("ctr(aes)", "skcipher", "ok")
    assert (ctr["usable"], ctr["reason"], ctr["listed"]) == (True, None, [])
    assert ctr["picked"] == "ctr-aes-aesni"
    assert report["kernel"]["af_alg"] == {"available": True, "error": None, "reason": None}
    assert [(d["driver"], d["priority"], d["picked"]) for d in ctr["drivers"]] == [
        ("ctr-aes-aesni", 400, True),
        ("ctr(aes-aesni)", 300, False),
        ("ctr(aes-generic)", 100, False),
    ]
    assert ctr["drivers"][0] == {
        "driver": "ctr-aes-aesni",
        "priority": 400,
        "module": "aesni_intel",
        "async": True,
        "selftest": "passed",
        "internal": False,
        "picked": True,
    }
    assert hmac["picked"] == "hmac(sha256-ni)"
    assert report["kernel"]["af_alg_restrict"] is None
    assert report["kernel"]["release"] == os.uname().release
    assert report["diagnosis"] == ["no problems found"]

    text = format_backends_text(report)
    assert "auto picks: kernel" in text
    pick_line = next(line for line in text.splitlines() if "ctr-aes-aesni" in line)
    assert "priority  400" in pick_line and "async" in pick_line
    assert pick_line.endswith("<- kernel's pick")
    assert text.count("<- kernel's pick") == 2  # one per algorithm
    assert "  AF_ALG sockets:  yes\n" in text
    assert "af_alg_restrict: not present" in text
    assert "key by serial:   yes (probe: serial 0 gave ENOKEY)" in text
    assert text.rstrip().endswith("- no problems found")


@pytest.mark.parametrize(
    ("ghash", "polyval", "readable", "via"),
    [
        (0, errno.ENOENT, True, ["ghash"]),
        (errno.ENOENT, 0, True, ["polyval"]),
        (0, 0, True, ["ghash", "polyval"]),
        (errno.ENOENT, errno.ENOENT, False, []),
    ],
)
def test_short_keyring_key_readability(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    ghash: int,
    polyval: int,
    readable: bool,
    via: list[str],
) -> None:
    """A ghash/polyval hash socket that binds means a 16-byte keyring key is readable: said
    in --json, in the text and in the diagnosis; a kernel without both says no."""
    simulate(
        monkeypatch,
        tmp_path,
        proc_crypto=AESNI,
        binds={**OK_BINDS, "ghash": ghash, "polyval": polyval},
        serial=SERIAL_OK,
    )
    report = backends_report()
    short = report["kernel"]["short_keyring_key_readable"]
    assert short == {
        "readable": readable,
        "via": via,
        "bind": {
            "ghash": "ok" if ghash == 0 else "ENOENT",
            "polyval": "ok" if polyval == 0 else "ENOENT",
        },
    }
    text = format_backends_text(report)
    line = next(ln for ln in text.splitlines() if "16-byte keyring key readable" in ln)
    assert line.split(": ", 1)[1].startswith("yes" if readable else "no")
    if readable:
        [warning] = report["diagnosis"]
        assert warning.startswith(
            "a 16-byte (AES-128) keyring key is readable here: AF_ALG " + " and ".join(via)
        )
        assert "256 bits" in warning
    else:
        assert report["diagnosis"] == ["no problems found"]


def test_no_short_key_is_readable_where_keys_by_serial_are_not(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Linux 6.1 binds ghash, but no keyring key reaches an AF_ALG socket there."""
    simulate(
        monkeypatch, tmp_path, proc_crypto=UML_6_1, binds={**OK_BINDS, "ghash": 0}, serial=SERIAL_NO
    )
    report = backends_report()
    short = report["kernel"]["short_keyring_key_readable"]
    assert short["readable"] is False and short["via"] == ["ghash"]
    text = format_backends_text(report)
    assert (
        "  16-byte keyring key readable: no (no keys by serial; hash bind: ghash ok, "
        "polyval ENOENT)\n"
    ) in text
    assert not any("readable here" in line for line in report["diagnosis"])


def test_generic_only_and_old_kernel_diagnosis(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    simulate(monkeypatch, tmp_path, proc_crypto=UML_6_1, binds=OK_BINDS, serial=SERIAL_NO)
    report = backends_report()
    assert report["algorithms"][0]["picked"] == "ctr(aes-generic)"
    diagnosis = report["diagnosis"]
    assert len(diagnosis) == 2
    assert "keys by keyring serial are not supported" in diagnosis[0]
    assert "6.2" in diagnosis[0] and "ENOPROTOOPT" in diagnosis[0]
    assert diagnosis[1].startswith("ctr(aes): only the generic ctr template over aes-generic")
    assert "no AES instructions" in diagnosis[1]
    text = format_backends_text(report)
    assert "key by serial:   no (probe: serial 0 gave ENOPROTOOPT)" in text


#: What the kernel backend's probe says without AF_ALG (kstream.backends.kernel.sockets).
NO_AF_ALG = {
    "ctr(aes)": errno.EAFNOSUPPORT,
    "hmac(sha256)": errno.EAFNOSUPPORT,
    "ghash": errno.EAFNOSUPPORT,
    "polyval": errno.EAFNOSUPPORT,
}


def test_no_af_alg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only what can be used: /proc/crypto lists drivers (the kernel's own), but without the
    socket family none is "the kernel's pick", and keys by serial are not "yes" whatever
    the kernel's release; each says why, in --json and in the text."""
    simulate(
        monkeypatch,
        tmp_path,
        proc_crypto=UML_7_2,
        binds=NO_AF_ALG,
        kernel_available=False,
        af_alg=errno.EAFNOSUPPORT,
    )
    report = backends_report()
    assert report["auto"] == "openssl"
    assert report["kernel"]["af_alg"] == {
        "available": False,
        "error": "EAFNOSUPPORT",
        "reason": "EAFNOSUPPORT: no AF_ALG in this kernel",
    }
    assert report["kernel"]["key_by_serial"] == {
        "supported": False,
        "how": "no AF_ALG",
        "detail": "socket(AF_ALG) failed with EAFNOSUPPORT",
    }
    for algorithm, listed in zip(
        report["algorithms"], (["ctr(aes-lib)"], ["hmac-sha256-lib"]), strict=True
    ):
        assert (algorithm["bind"], algorithm["usable"], algorithm["picked"]) == (
            "EAFNOSUPPORT",
            False,
            None,
        )
        assert algorithm["reason"] == "EAFNOSUPPORT: no AF_ALG in this kernel"
        assert algorithm["drivers"] == [] and algorithm["listed"] == listed
    [line] = report["diagnosis"]
    assert line.startswith("this kernel has no AF_ALG sockets")
    assert "CONFIG_CRYPTO_USER_API_SKCIPHER" in line
    text = format_backends_text(report)
    assert "kernel   unavailable  simulated: no AF_ALG" in text
    assert "kernel's pick" not in text and "key by serial:   yes" not in text
    assert "  AF_ALG sockets:  no (EAFNOSUPPORT: no AF_ALG in this kernel)\n" in text
    assert "  key by serial:   no (no AF_ALG: socket(AF_ALG) failed with EAFNOSUPPORT)\n" in text
    assert "  16-byte keyring key readable: no (no AF_ALG sockets)\n" in text
    assert (
        "hmac(sha256) (hash):\n"
        "  not usable here: EAFNOSUPPORT: no AF_ALG in this kernel\n"
        "  (/proc/crypto lists hmac-sha256-lib for the kernel's own use)\n"
    ) in text
    assert "priority" not in text  # no driver table for what cannot be used


def test_no_af_alg_because_of_af_alg_restrict_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    simulate(
        monkeypatch,
        tmp_path,
        proc_crypto="",
        binds=NO_AF_ALG,
        restrict=2,
        kernel_available=False,
        af_alg=errno.EAFNOSUPPORT,
    )
    report = backends_report()
    assert report["kernel"]["af_alg_restrict"] == 2
    assert "crypto.af_alg_restrict=2 disables them" in report["diagnosis"][0]
    why = "EAFNOSUPPORT: crypto.af_alg_restrict=2 disables AF_ALG"
    assert report["kernel"]["af_alg"]["reason"] == why
    assert [a["reason"] for a in report["algorithms"]] == [why, why]
    assert report["kernel"]["key_by_serial"]["supported"] is False
    text = format_backends_text(report)
    assert "  af_alg_restrict: 2 (AF_ALG disabled)\n" in text
    assert f"  AF_ALG sockets:  no ({why})\n" in text


def test_bind_refused_under_af_alg_restrict_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    simulate(
        monkeypatch,
        tmp_path,
        proc_crypto=AESNI,
        binds={"ctr(aes)": 0, "hmac(sha256)": errno.ENOENT},
        restrict=1,
        serial=SERIAL_OK,
    )
    report = backends_report()
    assert [a["bind"] for a in report["algorithms"]] == ["ok", "ENOENT"]
    ctr, hmac = report["algorithms"]
    assert ctr["usable"] and ctr["picked"] == "ctr-aes-aesni"
    assert (hmac["usable"], hmac["picked"], hmac["drivers"]) == (False, None, [])
    assert hmac["listed"] == ["hmac(sha256-ni)", "hmac(sha256-generic)"]
    assert hmac["reason"] == (
        "ENOENT: not allowed by crypto.af_alg_restrict=1 (allowlisted "
        "algorithms only), or module algif_hash or the algorithm's "
        "module missing"
    )
    refused, restrict = report["diagnosis"]
    assert "refused hash 'hmac(sha256)'" in refused
    assert "algif_hash" in refused and "af_alg_restrict=1" in refused
    assert restrict == "crypto.af_alg_restrict=1 (allowlisted algorithms only)"
    text = format_backends_text(report)
    assert "  af_alg_restrict: 1 (allowlisted algorithms only)\n" in text
    assert text.count("<- kernel's pick") == 1  # ctr(aes)'s; hmac(sha256) cannot be used
    assert f"  not usable here: {hmac['reason']}\n" in text


def test_bind_refused_without_the_sysctl(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    simulate(
        monkeypatch,
        tmp_path,
        proc_crypto="",
        binds={"ctr(aes)": errno.ENOENT, "hmac(sha256)": 0},
        kernel_available=False,
        serial=SERIAL_OK,
    )
    report = backends_report()
    [line] = report["diagnosis"]
    assert "refused skcipher 'ctr(aes)'" in line and "algif_skcipher" in line
    assert "af_alg_restrict" not in line  # no such sysctl on this (simulated) kernel
    assert report["algorithms"][0]["reason"] == (
        "ENOENT: module algif_skcipher or the algorithm's module missing"
    )


class _FakeAlgSocket:
    """Stands in for an AF_ALG socket whose ALG_SET_KEY_BY_KEY_SERIAL fails with ``code``,
    and whose bind fails with ``binds[name]`` (default: succeeds)."""

    def __init__(self, code: int | None, binds: dict[str, int] | None = None) -> None:
        self.code = code
        self.binds = binds or {}
        self.bound: list[tuple[str, str]] = []
        self.closed = False

    def __enter__(self) -> _FakeAlgSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.closed = True

    def close(self) -> None:
        self.closed = True

    def bind(self, address: tuple[str, str]) -> None:
        self.bound.append(address)
        if code := self.binds.get(address[1]):
            raise OSError(code, os.strerror(code))

    def setsockopt(self, level: int, option: int, value: bytes) -> None:
        assert (level, option, value) == (socket.SOL_ALG, 7, b"\0\0\0\0")
        if self.code is not None:
            raise OSError(self.code, os.strerror(self.code))


@pytest.mark.parametrize(
    ("code", "supported", "name"),
    [
        (errno.ENOPROTOOPT, False, "ENOPROTOOPT"),
        (errno.ENOKEY, True, "ENOKEY"),
        (errno.EINVAL, True, "EINVAL"),
        (None, True, None),
    ],
)
def test_key_by_serial_probe(
    monkeypatch: pytest.MonkeyPatch, code: int | None, supported: bool, name: str | None
) -> None:
    fake = _FakeAlgSocket(code)
    monkeypatch.setattr(socket, "socket", lambda *args: fake)
    result = key_by_serial_support()
    assert result["supported"] is supported
    assert result["how"] == "probe"
    assert result["detail"] == (f"serial 0 gave {name}" if name else "serial 0 was accepted")
    assert fake.closed and fake.bound == [("skcipher", "ctr(aes)")]


def test_key_by_serial_probe_uses_any_algorithm_kstream_uses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With ctr(aes) refused (af_alg_restrict=1 may do that), hmac(sha256) answers; with
    both refused, keys by serial cannot be used here: no, and which binds failed."""
    fake = _FakeAlgSocket(errno.ENOKEY, {"ctr(aes)": errno.ENOENT})
    monkeypatch.setattr(socket, "socket", lambda *args: fake)
    assert key_by_serial_support() == {
        "supported": True,
        "how": "probe",
        "detail": "serial 0 gave ENOKEY",
    }
    assert fake.bound == [("skcipher", "ctr(aes)"), ("hash", "hmac(sha256)")]
    fake = _FakeAlgSocket(None, {"ctr(aes)": errno.ENOENT, "hmac(sha256)": errno.EPERM})
    monkeypatch.setattr(socket, "socket", lambda *args: fake)
    assert key_by_serial_support() == {
        "supported": False,
        "how": "bind refused",
        "detail": "no algorithm kstream uses can be bound (ctr(aes) ENOENT, hmac(sha256) EPERM)",
    }


@pytest.mark.parametrize("release", ["6.1.176", "6.12.113", "7.3.0"])
def test_key_by_serial_without_af_alg_is_no_whatever_the_release(
    monkeypatch: pytest.MonkeyPatch, release: str
) -> None:
    """The release says whether the kernel has the option; without the socket family it
    cannot be used, and that is what the report is for."""
    deny_af_alg(monkeypatch)
    uname = os.uname()
    fake = os.uname_result((uname.sysname, uname.nodename, release, uname.version, uname.machine))
    monkeypatch.setattr(os, "uname", lambda: fake)
    assert key_by_serial_support() == {
        "supported": False,
        "how": "no AF_ALG",
        "detail": "socket(AF_ALG) failed with EAFNOSUPPORT",
    }


@pytest.mark.skipif(host_has_af_alg(), reason="this host has AF_ALG")
def test_real_report_on_a_host_without_af_alg() -> None:
    report = backends_report()
    kernel = report["backends"][0]
    assert kernel["name"] == "kernel" and not kernel["available"]
    assert "no AF_ALG" in kernel["reason"]
    assert report["auto"] == "openssl"
    assert report["diagnosis"][0].startswith("this kernel has no AF_ALG sockets")
    assert report["kernel"]["af_alg"]["error"] == "EAFNOSUPPORT"
    assert report["kernel"]["key_by_serial"]["supported"] is False
    assert all(
        not a["usable"] and a["picked"] is None and a["drivers"] == [] for a in report["algorithms"]
    )
    text = format_backends_text(report)
    assert "this kernel has no AF_ALG sockets" in text
    assert "kernel's pick" not in text and "key by serial:   yes" not in text
    assert "  AF_ALG sockets:  no (EAFNOSUPPORT: " in text


@pytest.mark.kernel
def test_real_report_in_a_kernel_with_af_alg() -> None:
    report = backends_report()
    kernel = report["backends"][0]
    assert kernel["available"], kernel["reason"]
    ctr, hmac = report["algorithms"]
    assert ctr["bind"] == hmac["bind"] == "ok"
    assert ctr["picked"] == kernel["details"]["driver"]
    assert [d["driver"] for d in ctr["drivers"] if d["picked"]] == [ctr["picked"]]
    assert hmac["picked"] is not None
    assert report["auto"] == "kernel"
    serial = report["kernel"]["key_by_serial"]
    assert serial["how"] == "probe"
    assert serial["supported"] is (kernel_version() >= (6, 2))
    assert ctr["picked"] in format_backends_text(report)


def _hash_binds(name: str) -> bool:
    with socket.socket(socket.AF_ALG, socket.SOCK_SEQPACKET, 0) as sock:
        try:
            sock.bind(("hash", name))
        except OSError:
            return False
    return True


@pytest.mark.kernel
def test_short_key_check_matches_this_kernel() -> None:
    """The check's answer is what a bind of ghash/polyval does here, on a kernel that keys
    AF_ALG by serial (7.2's UML build has neither hash, so there it must say no; 6.12 loads
    ghash-generic, so yes; 6.1 has ghash but no keys by serial, so no)."""
    short = diagnosis.short_key_readability()
    binds = {name: _hash_binds(name) for name in ("ghash", "polyval")}
    by_serial = key_by_serial_support()["supported"] is True
    assert short["readable"] is (any(binds.values()) and by_serial)
    assert short["via"] == [name for name, ok in binds.items() if ok]


def _ghash_by_serial(serial: int, data: bytes) -> bytes:
    with socket.socket(socket.AF_ALG, socket.SOCK_SEQPACKET, 0) as tfm:
        tfm.bind(("hash", "ghash"))
        tfm.setsockopt(socket.SOL_ALG, sockets.ALG_SET_KEY_BY_KEY_SERIAL, struct.pack("i", serial))
        op, _ = tfm.accept()
        with op:
            op.sendall(data)
            return op.recv(16)


@pytest.mark.kernel
def test_a_16_byte_logon_key_is_read_back_through_ghash() -> None:
    """The attack for real: a logon key that no process may read (KEYCTL_READ refuses) comes
    back through ghash keyed by its serial, and kstream's check says so."""
    if not _hash_binds("ghash"):
        pytest.skip(
            f"this kernel ({os.uname().release}) has no ghash hash for AF_ALG "
            "(Debian's UML 7.2 build has neither ghash nor polyval; 6.1/6.12 do)"
        )
    if key_by_serial_support()["supported"] is not True:
        pytest.skip("this kernel cannot key AF_ALG by serial (needs 6.2)")
    from kstream.keys import keyring

    secret = os.urandom(16)
    name = f"kstream:ghash-{os.getpid()}"
    serial = keyring.add_key("logon", name, bytearray(secret), "user")
    try:
        with pytest.raises(OSError):  # no process can read it the normal way
            keyring.keyctl(keyring.KEYCTL_READ, serial, ctypes.create_string_buffer(64), 64)
        assert _ghash_by_serial(serial, b"\x80" + bytes(15)) == secret
        assert diagnosis.short_key_readability()["readable"] is True
        long_serial = keyring.add_key("logon", name + "-32", bytearray(os.urandom(32)), "user")
        try:  # ghash takes only 16-byte keys: a 32-byte key is refused, not revealed
            with pytest.raises(OSError):
                _ghash_by_serial(long_serial, b"\x80" + bytes(15))
        finally:
            keyring.keyctl(keyring.KEYCTL_INVALIDATE, long_serial)
    finally:
        keyring.keyctl(keyring.KEYCTL_INVALIDATE, serial)
