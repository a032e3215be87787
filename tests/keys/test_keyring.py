"""Keys in the kernel keyring: syscall wrappers, lookups, messages, CLI, and (in UML) the
real thing: logon keys that encrypt and decrypt byte-identically to the same key from a
file, without the key ever being read by kstream.

Host-side tests simulate the kernel's answers; ``kernel`` tests run inside User Mode Linux
(6.1 has no ALG_SET_KEY_BY_KEY_SERIAL: the tests check its one-line explanation there).
Inside UML the tests run as root with no session keyring set up by a login: a lookup of
``@s`` then installs the per-user session keyring, which links ``@u``, so keys added to
the user keyring are possessed by every kstream process (as after a normal login).
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import hmac
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clirun import one_error, run_main
from kernelsim import kernel_version
from reference import ctr, unframe
from streams import corrupt_kernel_output

import kstream
from kstream.backends.base import Availability
from kstream.backends.kernel.backend import KernelBackend
from kstream.backends.kernel.ecb_ctr import KernelEcbCtrStream, counter_blocks
from kstream.backends.kernel.hmac import kernel_hmac_sha256
from kstream.backends.kernel.sockets import (
    ALG_SET_KEY_BY_KEY_SERIAL,
    NO_KEY_BY_SERIAL,
    bind_tfm,
    serial_key_error,
    set_key,
)
from kstream.backends.select import choose_backend
from kstream.errors import (
    BackendUnavailable,
    IntegrityError,
    InvalidKey,
    KstreamError,
    UsageError,
)
from kstream.format import HEADER_SIZE, Header
from kstream.keys import keyring
from kstream.keys.key import Key
from kstream.keys.keyring import KeyringRef
from kstream.segments import derive_mac_key, mac_key_info

KST = [sys.executable, "-m", "kstream"]
RAW = bytes(range(32))
LOGON = KeyringRef(4242, "logon", "kstream:t", 32, "user")
USER = KeyringRef(4343, "user", "kstream:u", 32, "session")
#: A kstream process that first joins a new anonymous session keyring (one that does not
#: link the user keyring), so that keys in @u are not possessed there.
NEW_SESSION = [
    sys.executable,
    "-c",
    "import os, sys\nfrom kstream.keys import keyring\n"
    "keyring.keyctl(keyring.KEYCTL_JOIN_SESSION_KEYRING, None)\n"
    "os.execvp(sys.argv[1], sys.argv[1:])",
]

PROC_KEYS = """\
0fc1ea0b I--Q---     6 perm 1f3f0000     0 65534 keyring   _uid_ses.0: 1
1086c651 I--Q---     1 perm 3d010000     0     0 logon     kstream:k: 16
11aea802 I--Q---     2 perm 1f3f0000     0 65534 keyring   _uid.0: 3
1a612465 I--Q---     1 perm 3d010000     0     0 logon     kstream:x: 32
2a3b5aea I--Q---     1   5m 3f010000     0     0 user      kstream:x u: 24
00001092 I--Q---     1 perm 3d010000     0     0 logon     kstream:t: 32
000010e7 I--Q---     1 perm 3f010000     0     0 user      kstream:u: 32
00000bad I--Q---     1 perm 3d010000     0     0 logon     kstream:short: 20
"""


def kst(
    *args: object, input: bytes | None = None, prefix: list[str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(
        [*(prefix or []), *KST, *map(str, args)], input=input, capture_output=True, timeout=300
    )
    if check and proc.returncode:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr.decode()}")
    return proc


def keyring_usable() -> bool:
    try:
        keyring.resolve_keyring("user")
    except KstreamError:
        return False
    return True


# --------------------------------------------------------------------------- syscalls


def test_syscall_numbers_per_machine() -> None:
    assert keyring.syscall_numbers("x86_64") == (248, 249, 250)
    assert keyring.syscall_numbers("aarch64") == (217, 218, 219)
    assert keyring.syscall_numbers("riscv64") == (217, 218, 219)
    with pytest.raises(BackendUnavailable, match=r"machine 'sparc64' .*; use a key file$"):
        keyring.syscall_numbers("sparc64")


def test_keyctl_raises_the_kernels_errno(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []

    def fake(number: int, *args: object) -> int:
        calls.append((number, *args))
        return -errno.ENOKEY

    monkeypatch.setattr(keyring, "_raw_syscall", fake)
    monkeypatch.setattr(keyring, "syscall_numbers", lambda machine=None: (248, 249, 250))
    with pytest.raises(OSError) as info:
        keyring.search("user", "logon", "kstream:x")
    assert info.value.errno == errno.ENOKEY
    number, operation, ring, key_type, description, dest = calls[0]
    assert number == 250
    assert operation.value == keyring.KEYCTL_SEARCH and ring.value == -4
    assert (key_type, description, dest.value) == (b"logon", b"kstream:x", 0)


def test_raw_syscall_reports_errno_through_libc() -> None:
    # keyctl(-1) is no operation: EOPNOTSUPP from any kernel with keys, ENOSYS without.
    result = keyring._raw_syscall(keyring.syscall_numbers()[2], ctypes.c_long(-1))
    assert result in (-errno.EOPNOTSUPP, -errno.ENOSYS, -errno.EPERM)


@pytest.mark.parametrize(
    ("code", "cls", "match"),
    [
        (
            errno.ENOKEY,
            InvalidKey,
            "no key 'kstream:x' in the session or user keyring; create "
            "one with 'kstream key gen x'",
        ),
        (errno.EKEYEXPIRED, InvalidKey, "key 'kstream:x' has expired; add the key again"),
        (errno.EKEYREVOKED, InvalidKey, "key 'kstream:x' has been revoked"),
        (
            errno.EACCES,
            InvalidKey,
            "no permission to use key 'kstream:x'; if it is in the user "
            "keyring, link that into your session keyring with 'keyctl link @u @s'",
        ),
        (errno.ENOSYS, BackendUnavailable, "this kernel has no keyring support"),
        (errno.EPERM, BackendUnavailable, "not permitted here (a container's seccomp policy"),
    ],
)
def test_find_key_errors(
    monkeypatch: pytest.MonkeyPatch, code: int, cls: type[KstreamError], match: str
) -> None:
    def search(ring: str, key_type: str, description: str) -> int:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(keyring, "search", search)
    with pytest.raises(cls) as info:
        keyring.find_key("x")
    assert match in str(info.value) and "\n" not in str(info.value)


def test_find_key_prefers_session_then_logon_and_takes_the_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[tuple[str, str]] = []

    def search(ring: str, key_type: str, description: str) -> int:
        asked.append((ring, key_type))
        if (ring, key_type) == ("user", "user"):
            return 0x2A3B5AEA
        raise OSError(errno.ENOKEY, "no")

    monkeypatch.setattr(keyring, "search", search)
    monkeypatch.setattr(keyring, "read_proc_keys", lambda: keyring.parse_proc_keys(PROC_KEYS))
    ref = keyring.find_key("x")
    assert asked == [
        ("session", "logon"),
        ("session", "encrypted"),
        ("session", "user"),
        ("user", "logon"),
        ("user", "encrypted"),
        ("user", "user"),
    ]
    # /proc/keys says serial 2a3b5aea holds 24 bytes (its description there differs: the
    # size is looked up by serial only).
    assert ref == KeyringRef(0x2A3B5AEA, "user", "kstream:x", 24, "user")


def test_wrong_sizes_and_types_are_refused_at_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keyring, "read_proc_keys", lambda: keyring.parse_proc_keys(PROC_KEYS))
    monkeypatch.setattr(keyring, "search", lambda ring, t, d: 0xBAD)
    with pytest.raises(
        InvalidKey,
        match=r"^logon key 'kstream:short' \(serial 2989\) holds 20 "
        r"bytes; an AES key must be 16, 24 or 32 bytes$",
    ):
        keyring.find_key("short")
    monkeypatch.setattr(keyring, "read_proc_keys", lambda: None)
    with pytest.raises(InvalidKey, match="not listed in /proc/keys"):
        keyring.find_key("short")
    monkeypatch.setattr(keyring, "describe", lambda serial: ("keyring", 0, 0, 0x1F3F0000, "_uid.0"))
    with pytest.raises(
        InvalidKey, match="^serial 77 is a keyring, not a logon, encrypted or user key"
    ):
        keyring.key_by_serial(77)

    def gone(serial: int) -> tuple[str, int, int, int, str]:
        raise OSError(errno.ENOKEY, "gone")

    monkeypatch.setattr(keyring, "describe", gone)
    with pytest.raises(InvalidKey, match="^no key with serial 77; see 'kstream key list'$"):
        keyring.key_by_serial(77)
    with pytest.raises(UsageError, match="positive key serial"):
        keyring.key_by_serial(-4)


def test_proc_keys_parser_and_permissions() -> None:
    keys = {k.description: k for k in keyring.parse_proc_keys(PROC_KEYS)}
    assert keys["kstream:x"].size == 32 and keys["kstream:x"].type == "logon"
    assert keys["kstream:x u"].size == 24 and keys["kstream:x u"].expiry == "5m"
    assert keys["_uid.0"].type == "keyring" and keys["_uid.0"].size is None
    assert keyring.format_perm(0x3D010000) == "possessor alsw-v, user -----v"
    assert keyring.format_perm(0x3F3F0008) == ("possessor alswrv, user alswrv, other --s---")


def test_a_removed_key_is_not_listed_while_the_kernel_collects_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``key rm`` invalidates; the kernel shows the key (flag ``i``, later ``D``) until
    its garbage collector runs, which on 6.1 can be after the next command."""
    gone = (
        "00002001 I-----i     1 perm 3d010000     0     0 logon     kstream:rm: 32\n"
        "00002002 I-D----     1 perm 3d010000     0     0 logon     kstream:dead: 32\n"
    )
    text = PROC_KEYS + gone
    monkeypatch.setattr(keyring, "keyring_members", lambda ring: [])
    names = {k.name for k in keyring.list_keys(lambda: keyring.parse_proc_keys(text))}
    assert names == {"k", "x", "x u", "t", "u", "short"}


def test_key_names() -> None:
    assert keyring.description_for("backup") == "kstream:backup"
    assert keyring.description_for("kstream:backup") == "kstream:backup"
    for bad in ("", "a b", "x\n", "é", "a" * 201):
        with pytest.raises(UsageError, match="invalid key name"):
            keyring.description_for(bad)


# --------------------------------------------------------------------------- AF_ALG errors


class FakeTfm:
    def __init__(self, code: int | None) -> None:
        self.code = code
        self.calls: list[tuple[int, int, bytes]] = []

    def setsockopt(self, level: int, option: int, value: bytes) -> None:
        self.calls.append((level, option, value))
        if self.code is not None:
            raise OSError(self.code, os.strerror(self.code))


@pytest.mark.parametrize(
    ("code", "cls", "message"),
    [
        (
            errno.ENOPROTOOPT,
            BackendUnavailable,
            "this kernel cannot take keys from the keyring (needs Linux ≥ 6.2); use a key file",
        ),
        (
            errno.ENOKEY,
            InvalidKey,
            "logon key 'kstream:t' (serial 4242) no longer exists (removed, or its keyring was "
            "cleared)",
        ),
        (
            errno.EACCES,
            InvalidKey,
            "no permission to use logon key 'kstream:t' (serial 4242) from the user keyring: "
            "this process does not possess it; link the user keyring into your session keyring "
            "with 'keyctl link @u @s', or add the key with --keyring session",
        ),
        (
            errno.EKEYEXPIRED,
            InvalidKey,
            "logon key 'kstream:t' (serial 4242) has expired; "
            "add the key again ('kstream key add')",
        ),
        (
            errno.EKEYREVOKED,
            InvalidKey,
            "logon key 'kstream:t' (serial 4242) has been revoked; add the key again ('kstream key "
            "add')",
        ),
        (
            errno.EINVAL,
            InvalidKey,
            "the kernel's ctr(aes-generic) refused logon key 'kstream:t' (serial 4242): an AES key "
            "must be 16, 24 or 32 bytes",
        ),
        (
            errno.EIO,
            BackendUnavailable,
            "the kernel's ctr(aes-generic) could not take logon key 'kstream:t' (serial 4242): "
            "Input/output error",
        ),
    ],
)
def test_set_key_by_serial_errors(code: int, cls: type[KstreamError], message: str) -> None:
    tfm = FakeTfm(code)
    with pytest.raises(cls) as info:
        set_key(tfm, LOGON, "ctr(aes-generic)")  # type: ignore[arg-type]
    assert str(info.value) == message
    assert tfm.calls == [(socket.SOL_ALG, 7, struct.pack("i", 4242))]
    assert isinstance(serial_key_error(code, LOGON, "x"), cls)


def test_set_key_by_serial_passes_only_the_serial() -> None:
    tfm = FakeTfm(None)
    set_key(tfm, LOGON, "ctr(aes)")  # type: ignore[arg-type]
    assert tfm.calls == [(socket.SOL_ALG, ALG_SET_KEY_BY_KEY_SERIAL, struct.pack("i", 4242))]


def test_counter_blocks_wrap_like_ctr() -> None:
    for first in (0, (1 << 64) - 2, (1 << 128) - 1, 12345):
        want = b"".join(((first + i) % (1 << 128)).to_bytes(16, "big") for i in range(5))
        assert counter_blocks(first, 5) == want


# --------------------------------------------------------------------------- Key objects


def keyring_key(ref: KeyringRef) -> Key:
    key = Key.__new__(Key)
    key._material = bytearray()
    key._ref = ref
    return key


def test_a_logon_key_is_never_read(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_syscalls(*args: object) -> int:
        raise AssertionError("no system call may be made to read a logon key")

    monkeypatch.setattr(keyring, "_raw_syscall", no_syscalls)
    key = keyring_key(LOGON)
    with pytest.raises(
        InvalidKey,
        match=r"^logon key 'kstream:t' \(serial 4242\) cannot be "
        r'read by any process .* use backend="kernel" \(Linux ≥ 6.2\)$',
    ):
        key.material()
    assert repr(key) == (
        "<kstream.Key AES-256 in the kernel keyring: logon key 'kstream:t' (serial 4242)>"
    )
    assert (key.size, key.bits, key.suite.key_size) == (32, 256, 32)
    with pytest.raises(UsageError, match="cannot be saved to a file"):
        key.save("/nonexistent/k")
    with pytest.raises(UsageError, match="cannot be exported"):
        key.hex_text()
    key.wipe()  # nothing to wipe; must not fail


def test_user_key_material_goes_through_the_one_read(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[KeyringRef] = []

    def read(ref: KeyringRef) -> bytearray:
        asked.append(ref)
        return bytearray(RAW)

    monkeypatch.setattr(keyring, "read_key_payload", read)
    assert keyring_key(USER).material() == RAW and asked == [USER]


# --------------------------------------------------------------------------- backend policy


def no_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        KernelBackend, "probe", lambda self: Availability("kernel", False, "no AF_ALG here (test)")
    )


def test_logon_key_needs_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    no_kernel(monkeypatch)
    key = keyring_key(LOGON)
    for backend in ("auto", "kernel"):
        with pytest.raises(
            BackendUnavailable,
            match=r"^logon key 'kstream:t' \(serial 4242\) "
            r"can only be used through the kernel crypto API, which is not "
            r"available here: no AF_ALG here \(test\)$",
        ):
            choose_backend(key, backend, print)
    with pytest.raises(
        UsageError,
        match='cannot be used with backend="openssl": a logon key never leaves the kernel',
    ):
        choose_backend(key, "openssl", print)


async def test_user_key_with_explicit_openssl_is_read_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    no_kernel(monkeypatch)
    monkeypatch.setattr(keyring, "read_key_payload", lambda ref: bytearray(RAW))
    key = keyring_key(USER)
    with pytest.raises(
        BackendUnavailable,
        match='backend="openssl" can read this user key into process memory instead$',
    ):
        choose_backend(key, "auto", print)
    notices: list[str] = []
    plain = os.urandom(70000)
    (tmp_path / "p").write_bytes(plain)
    await kstream.encrypt_file(
        tmp_path / "p", tmp_path / "c", key=key, backend="openssl", notify=notices.append
    )
    assert notices == [
        'warning: backend="openssl" reads user key '
        "'kstream:u' (serial 4343) out of the kernel keyring: the key's bytes "
        "now enter this process's memory"
    ]
    await kstream.decrypt_file(tmp_path / "c", tmp_path / "d", key=Key(RAW), backend="openssl")
    assert (tmp_path / "d").read_bytes() == plain


# --------------------------------------------------------------------------- CLI


@pytest.mark.skipif(not keyring_usable(), reason="keyring system calls not usable here")
def test_host_keyring_round_trip_in_a_private_session(tmp_path: Path) -> None:
    """Real keyring calls on the host, in a throwaway session keyring: gen, add, list, rm,
    and without AF_ALG (this host) the one-line explanation for keyring keys."""
    script = f"""
set -e
K="{sys.executable} -m kstream"
$K key gen a --bits 192 --keyring session --save {tmp_path}/a.key >{tmp_path}/serial
$K key add b --type user --keyring session <{tmp_path}/a.key >/dev/null
$K key list --json >{tmp_path}/list.json
$K key gen a --keyring session 2>{tmp_path}/again.err && exit 9 || true
$K key gen c --keyring session --save {tmp_path}/a.key 2>{tmp_path}/save.err && exit 7 || true
$K encrypt --key-name a {tmp_path}/p {tmp_path}/c 2>{tmp_path}/enc.err && exit 8 || true
$K encrypt --key-name b --backend openssl {tmp_path}/p {tmp_path}/c 2>{tmp_path}/ossl.err
$K key rm a --yes >/dev/null
$K key list >{tmp_path}/list.txt
"""
    (tmp_path / "p").write_bytes(os.urandom(5000))
    proc = subprocess.run([*NEW_SESSION, "sh", "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    listed = {k["name"]: k for k in json.loads((tmp_path / "list.json").read_text())}
    assert listed["a"]["serial"] == int((tmp_path / "serial").read_text())
    assert (listed["a"]["type"], listed["a"]["bits"], listed["a"]["keyrings"]) == (
        "logon",
        192,
        ["session"],
    )
    assert listed["a"]["perm"] == "3d010000" and listed["b"]["type"] == "user"
    one_error((tmp_path / "again.err").read_text(), "logon key 'kstream:a' already exists")
    one_error((tmp_path / "save.err").read_text(), "already exists; refusing to overwrite")
    if not host_has_af_alg():
        one_error(
            (tmp_path / "enc.err").read_text(),
            f"logon key 'kstream:a' (serial {listed['a']['serial']}) can only be used "
            "through the kernel crypto API, which is not available here: this kernel "
            "has no AF_ALG sockets",
        )
    assert (
        (tmp_path / "ossl.err")
        .read_text()
        .startswith("kstream: warning: --backend openssl reads user key 'kstream:b'")
    )
    back = Key.from_file(tmp_path / "a.key")
    assert (
        ctr(
            back.material(),
            (tmp_path / "c").read_bytes()[16:32],
            unframe((tmp_path / "c").read_bytes()[HEADER_SIZE:]),
        )
        == (tmp_path / "p").read_bytes()
    )
    listing = (tmp_path / "list.txt").read_text().splitlines()
    assert listing[0].split() == [
        "SERIAL",
        "TYPE",
        "BITS",
        "KEYRING",
        "EXPIRY",
        "PERMISSIONS",
        "MASTER",
        "NAME",
    ]
    # a was removed; c was never added, as its backup file could not be written
    assert [line.split()[-1] for line in listing[1:]] == ["b"]


def host_has_af_alg() -> bool:
    try:
        with socket.socket(socket.AF_ALG, socket.SOCK_SEQPACKET) as sock:
            sock.bind(("skcipher", "ctr(aes)"))
    except OSError:
        return False
    return True


# --------------------------------------------------------------------------- in the kernel
#
# Everything below runs inside User Mode Linux (6.1, 6.12, 7.2). The CLI is called in this
# process where it can be (starting Python costs ~0.5 s in UML); pipes and other sessions
# need a real subprocess.

SIZE = 2 * 1032192 + 4099  # three segments, the last one partial


def needs_key_serial() -> None:
    if kernel_version() < (6, 2):
        pytest.skip(
            "ALG_SET_KEY_BY_KEY_SERIAL needs Linux ≥ 6.2 "
            "(test_kernel_before_6_2_explains checks the message here)"
        )


def remove_all(name: str) -> None:
    """Invalidate every key called kstream:NAME, usable or not (cleanup)."""
    for _ in range(8):
        for ring in ("session", "user"):
            for key_type in keyring.KEY_TYPES:
                try:
                    serial = keyring.search(ring, key_type, keyring.PREFIX + name)
                    keyring.keyctl(keyring.KEYCTL_INVALIDATE, serial)
                except OSError:
                    continue
                break
            else:
                continue
            break
        else:
            return


@pytest.fixture
def names() -> Iterator[list[str]]:
    """Fresh key names (unique per test: keys in @u outlive a test); all removed after."""
    made = [f"t{uuid.uuid4().hex[:12]}" for _ in range(6)]
    yield made
    for name in made:
        remove_all(name)


@pytest.fixture(scope="module")
def plain_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keyring") / "p"
    path.write_bytes(os.urandom(SIZE))
    return path


def decrypted(key_bytes: bytes, blob: bytes) -> bytes:
    """The plaintext of a kstream file by the independent reference implementation."""
    header = Header.parse(blob[:HEADER_SIZE])
    return ctr(key_bytes, header.iv, unframe(blob[HEADER_SIZE:]))


def add(name: str, raw: bytes, key_type: str = "logon", ring: str = "user") -> int:
    return keyring.add_key(key_type, keyring.PREFIX + name, bytearray(raw), ring)


@pytest.mark.kernel
def test_kernel_before_6_2_explains(
    names: list[str], tmp_path: Path, plain_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = names[0]
    kf = tmp_path / "k"
    code, _, _ = run_main(capsys, "key", "gen", name, "--save", kf)
    assert code == 0  # the keyring itself works on every kernel
    small = tmp_path / "small"
    small.write_bytes(plain_file.read_bytes()[:100000])
    run_main(capsys, "encrypt", "--backend", "openssl", "-k", kf, small, tmp_path / "co")
    attempts: list[tuple[object, ...]] = [
        ("encrypt", "--key-name", name, small, tmp_path / "c1"),
        ("encrypt", "--key-name", name, "-j", 2, plain_file, tmp_path / "c2"),
        ("decrypt", "--key-name", name, tmp_path / "co", tmp_path / "d"),
    ]
    if kernel_version() >= (6, 2):
        for args in attempts:
            assert run_main(capsys, *args)[0] == 0
        assert (tmp_path / "d").read_bytes() == small.read_bytes()
        return
    for args in attempts:
        code, out, err = run_main(capsys, *args)
        assert code == 3 and out == ""
        assert err == f"kstream: error: {NO_KEY_BY_SERIAL}\n"
        assert not os.path.exists(str(args[-1]))
        assert not [n for n in os.listdir(tmp_path) if n.endswith(".kstream-partial")]
    assert NO_KEY_BY_SERIAL == (
        "this kernel cannot take keys from the keyring (needs Linux ≥ 6.2); use a key file"
    )
    proc = kst("encrypt", "--key-name", name, "-", "-", input=b"x" * 1000, check=False)
    assert proc.returncode == 3 and proc.stdout == b""
    assert proc.stderr.decode() == f"kstream: error: {NO_KEY_BY_SERIAL}\n"


@pytest.mark.kernel
def test_gen_logon_key_round_trips_with_its_key_file(
    names: list[str], tmp_path: Path, plain_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """kstream key gen → encrypt/decrypt by --key-name and by key file, crosswise, for
    files (sequential and -j 2) and pipes; every output also checked by the reference."""
    needs_key_serial()
    name, kf = names[0], tmp_path / "k"
    code, out, err = run_main(capsys, "key", "gen", name, "--bits", 256, "--save", kf)
    assert code == 0
    serial = int(out)
    assert err == (
        f"kstream: notice: added logon key 'kstream:{name}' (AES-256) to the user keyring\n"
    )
    assert oct(kf.stat().st_mode & 0o777) == "0o600"
    raw = Key.from_file(kf).material()
    plain = plain_file.read_bytes()
    for jobs in (1, 2):
        c, d = tmp_path / f"c{jobs}", tmp_path / f"d{jobs}"
        code, out, err = run_main(capsys, "encrypt", "--key-name", name, "-j", jobs, plain_file, c)
        assert (code, out, err) == (0, "", "")  # auto picked the kernel: no notice
        assert decrypted(raw, c.read_bytes()) == plain
        assert run_main(capsys, "decrypt", "--backend", "openssl", "-k", kf, c, d)[0] == 0
        assert d.read_bytes() == plain
    co = tmp_path / "co"
    assert run_main(capsys, "encrypt", "--backend", "openssl", "-k", kf, plain_file, co)[0] == 0
    for jobs, how in ((1, ("--key-name", name)), (2, ("--key-serial", serial))):
        d = tmp_path / f"do{jobs}"
        assert run_main(capsys, "decrypt", *how, "-j", jobs, co, d)[0] == 0
        assert d.read_bytes() == plain
    piped = kst("encrypt", "--key-name", name, "-", "-", input=plain).stdout
    assert decrypted(raw, piped) == plain
    assert kst("decrypt", "--backend", "openssl", "-k", kf, "-", "-", input=piped).stdout == plain
    assert kst("decrypt", "--key-name", name, "-", "-", input=co.read_bytes()).stdout == plain


@pytest.mark.kernel
@pytest.mark.parametrize("bits", [128, 192, 256])
def test_keys_added_by_keyctl_work(
    names: list[str], tmp_path: Path, bits: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """keyutils' `keyctl padd logon kstream:x @u` interoperates with --key-name/--key-serial,
    and `kstream key add` from a key file gives the same key."""
    needs_key_serial()
    if shutil.which("keyctl") is None:
        pytest.skip("keyctl (Debian's keyutils) is not installed")
    raw = os.urandom(bits // 8)
    (tmp_path / "raw").write_bytes(raw)
    proc = subprocess.run(
        ["keyctl", "padd", "logon", f"kstream:{names[0]}", "@u"],
        input=raw,
        capture_output=True,
        check=True,
    )
    serial = int(proc.stdout)
    plain = os.urandom(100003)
    (tmp_path / "p").write_bytes(plain)
    assert (
        run_main(capsys, "encrypt", "--key-name", names[0], tmp_path / "p", tmp_path / "c")[0] == 0
    )
    assert decrypted(raw, (tmp_path / "c").read_bytes()) == plain
    assert (
        run_main(capsys, "decrypt", "--key-serial", serial, tmp_path / "c", tmp_path / "d")[0] == 0
    )
    assert (tmp_path / "d").read_bytes() == plain
    # The same bytes through `kstream key add` (hex key file on stdin) decrypt it too.
    (tmp_path / "hex").write_text(raw.hex() + "\n")
    added = kst("key", "add", names[1], input=(tmp_path / "hex").read_bytes())
    from kstream.cli.key import SHORT_KEY_WARNING

    warning = f"kstream: warning: {SHORT_KEY_WARNING}\n" if bits == 128 else ""
    assert added.stderr.decode() == (
        warning + f"kstream: notice: added logon key "
        f"'kstream:{names[1]}' (AES-{bits}) to the user keyring\n"
    )
    assert (
        run_main(capsys, "decrypt", "--key-name", names[1], "-f", tmp_path / "c", tmp_path / "d")[0]
        == 0
    )
    assert (tmp_path / "d").read_bytes() == plain
    _, out, _ = run_main(capsys, "key", "list", "--json")
    listed = {k["serial"]: k for k in json.loads(out)}
    assert listed[serial]["name"] == names[0] and listed[serial]["bits"] == bits
    assert listed[int(added.stdout)]["type"] == "logon"


@pytest.mark.kernel
def test_mac_key_is_derived_in_the_kernel(names: list[str]) -> None:
    needs_key_serial()
    raw = os.urandom(32)
    add(names[0], raw)
    add(names[1], raw, "user")
    for name in names[:2]:
        key = Key.from_keyring(name)
        header = Header(suite=key.suite, iv=os.urandom(16))
        want = hmac.new(raw, mac_key_info(header), "sha256").digest()
        assert derive_mac_key(key, header) == derive_mac_key(Key(raw), header) == want
        ref = key.keyring_ref
        assert ref is not None
        assert kernel_hmac_sha256(ref, b"abc") == hmac.new(raw, b"abc", "sha256").digest()


@pytest.mark.kernel
def test_kstream_never_reads_a_logon_key(
    names: list[str], tmp_path: Path, plain_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seam: reading key payloads is forbidden and every keyctl call is watched, and
    files (sequential and parallel), --verify and streams all still work."""
    needs_key_serial()
    raw = os.urandom(24)
    serial = add(names[0], raw)
    buf = ctypes.create_string_buffer(64)
    with pytest.raises(OSError) as info:  # the kernel would refuse anyway
        keyring.keyctl(keyring.KEYCTL_READ, serial, buf, len(buf))
    assert info.value.errno in (errno.EOPNOTSUPP, errno.EACCES)

    def forbidden(ref: KeyringRef) -> bytearray:
        raise AssertionError(f"kstream tried to read {ref.label}")

    real_keyctl = keyring.keyctl
    operations: list[int] = []

    def watched(operation: int, *args: Any) -> int:
        operations.append(operation)
        assert not (operation == keyring.KEYCTL_READ and args and args[0] == serial)
        return real_keyctl(operation, *args)

    monkeypatch.setattr(keyring, "read_key_payload", forbidden)
    monkeypatch.setattr(keyring, "keyctl", watched)
    key = Key.from_keyring(names[0])
    assert key.bits == 192
    plain = plain_file.read_bytes()
    p = plain_file

    async def pieces(data: bytes) -> Any:
        for i in range(0, len(data), 300007):
            yield data[i : i + 300007]

    async def run() -> tuple[bytes, bytes]:
        await kstream.encrypt_file(p, tmp_path / "c1", key=key, jobs=1)
        await kstream.encrypt_file(p, tmp_path / "c2", key=key, jobs=2, verify=True)
        await kstream.decrypt_file(tmp_path / "c1", tmp_path / "d1", key=key, jobs=2, verify=True)
        await kstream.decrypt_file(tmp_path / "c2", tmp_path / "d2", key=key, jobs=1)
        blob = b"".join(
            [x async for x in kstream.encrypt_stream(pieces(plain), key=key, verify=True)]
        )
        back = b"".join([x async for x in kstream.decrypt_stream(pieces(blob), key=key)])
        return blob, back

    blob, back = asyncio.run(run())
    for name in ("c1", "c2"):
        assert decrypted(raw, (tmp_path / name).read_bytes()) == plain
    assert decrypted(raw, blob) == plain and back == plain
    assert (tmp_path / "d1").read_bytes() == plain == (tmp_path / "d2").read_bytes()
    assert keyring.KEYCTL_SEARCH in operations  # the watch was on
    assert keyring.KEYCTL_READ not in operations


@pytest.mark.kernel
def test_ecb_reference_stream_is_ctr() -> None:
    """The --verify reference for keyring keys, on odd chunk sizes and across the 64- and
    128-bit counter boundaries (raw bytes here, so it runs on every kernel)."""
    raw = os.urandom(16)
    data = os.urandom(200000)
    for iv in (bytes(16), (2**64 - 3).to_bytes(16, "big"), b"\xff" * 15 + b"\xfd"):
        stream = KernelEcbCtrStream(raw, iv)
        out, pos = [], 0
        for size in (1, 15, 16, 17, 100000, 4000, 1):
            out.append(stream.update(data[pos : pos + size]))
            pos += size
        out.append(stream.update(data[pos:]))
        out.append(stream.finalize())
        assert b"".join(out) == ctr(raw, iv, data)


@pytest.mark.kernel
def test_verify_with_a_keyring_key_catches_a_wrong_byte(
    names: list[str], tmp_path: Path, plain_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    needs_key_serial()
    add(names[0], os.urandom(16))
    key = Key.from_keyring(names[0])
    corrupt_kernel_output(monkeypatch)
    with pytest.raises(
        IntegrityError,
        # ctr(aes-generic) in UML; ctr-aes-aesni-avx, ecb-aes-aesni and the like with AES-NI
        match=r"^verification failed: kernel ctr[-(]\S* disagrees "
        r"with ctr computed by kstream over kernel ecb[-(]\S* at byte offset "
        r"100$",
    ):
        asyncio.run(
            kstream.encrypt_file(plain_file, tmp_path / "bad", key=key, verify=True, jobs=1)
        )
    assert not (tmp_path / "bad").exists()


@pytest.mark.kernel
def test_keyring_errors_are_one_line(
    names: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    needs_key_serial()
    p, c = tmp_path / "p", tmp_path / "c"
    p.write_bytes(os.urandom(5000))

    def fails(code: int, match: str, *key_args: object, backend: str = "auto") -> None:
        got, out, err = run_main(capsys, "encrypt", "--backend", backend, *key_args, p, c)
        assert (got, out) == (code, ""), err
        one_error(err, match)
        assert not c.exists()

    missing, short, revoked, expired, raced, logon = names
    fails(2, f"no key 'kstream:{missing}' in the session or user keyring", "--key-name", missing)
    fails(2, "no key with serial 2147483000; see 'kstream key list'", "--key-serial", 2147483000)
    user_ring = keyring.resolve_keyring("user")
    fails(
        2,
        f"serial {user_ring} is a keyring, not a logon, encrypted or user key",
        "--key-serial",
        user_ring,
    )
    serial = add(short, bytes(20))
    fails(
        2,
        f"logon key 'kstream:{short}' (serial {serial}) holds 20 bytes; an AES key must "
        "be 16, 24 or 32 bytes",
        "--key-name",
        short,
    )
    with (
        bind_tfm("skcipher", "ctr(aes)") as tfm,
        pytest.raises(
            InvalidKey, match=r"refused logon key .* an AES key must be 16, 24 or 32 bytes$"
        ),
    ):
        set_key(tfm, KeyringRef(serial, "logon", f"kstream:{short}", 20), "ctr(aes)")
    serial = add(revoked, os.urandom(16))
    keyring.keyctl(keyring.KEYCTL_REVOKE, serial)
    fails(2, f"key 'kstream:{revoked}' has been revoked", "--key-name", revoked)
    fails(2, f"key serial {serial} has been revoked", "--key-serial", serial)
    serial = add(expired, os.urandom(16))
    keyring.keyctl(keyring.KEYCTL_SET_TIMEOUT, serial, 1)
    time.sleep(1.3)
    fails(2, f"key 'kstream:{expired}' has expired", "--key-name", expired)
    # Between the lookup and the kernel's use (AF_ALG's own errno): revoked, removed.
    add(raced, os.urandom(32))
    key = Key.from_keyring(raced)
    ref = key.keyring_ref
    assert ref is not None
    keyring.keyctl(keyring.KEYCTL_REVOKE, ref.serial)
    with pytest.raises(
        InvalidKey,
        match=rf"^logon key 'kstream:{raced}' \(serial "
        r"\d+\) has been revoked; add the key again",
    ):
        asyncio.run(kstream.encrypt_file(p, c, key=key))
    add(logon, os.urandom(32))
    fails(2, f"logon key 'kstream:{logon}' (serial ", "--key-name", logon, backend="openssl")
    fails(
        2,
        "cannot be used with --backend openssl: a logon key never leaves the kernel",
        "--key-name",
        logon,
        backend="openssl",
    )


@pytest.mark.kernel
def test_a_key_this_process_does_not_possess(names: list[str], tmp_path: Path) -> None:
    """A key in @u, used from a session keyring that does not link @u: EACCES, with the
    fix in the message; after `keyctl link @u @s` it works."""
    needs_key_serial()
    serial = add(names[0], os.urandom(16))
    (tmp_path / "p").write_bytes(b"secret" * 1000)
    proc = kst(
        "encrypt",
        "--key-name",
        names[0],
        tmp_path / "p",
        tmp_path / "c",
        prefix=NEW_SESSION,
        check=False,
    )
    assert proc.returncode == 2
    one_error(
        proc.stderr.decode(),
        f"no permission to use logon key 'kstream:{names[0]}' (serial {serial}) from "
        "the user keyring: this process does not possess it; link the user keyring "
        "into your session keyring with 'keyctl link @u @s'",
    )
    assert not (tmp_path / "c").exists()
    if shutil.which("keyctl") is None:
        return
    script = (
        f"keyctl link @u @s && {sys.executable} -m kstream encrypt --key-name {names[0]}"
        f" {tmp_path}/p {tmp_path}/c"
    )
    proc = subprocess.run([*NEW_SESSION, "sh", "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()


@pytest.mark.kernel
def test_user_key_policy(
    names: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A user key goes to the kernel by serial like a logon key (not read); only an explicit
    --backend openssl reads it, with a warning."""
    needs_key_serial()
    raw = os.urandom(32)
    add(names[0], raw, "user")
    p = tmp_path / "p"
    p.write_bytes(os.urandom(70001))
    with monkeypatch.context() as m:
        m.setattr(keyring, "read_key_payload", lambda ref: pytest.fail("user key was read"))
        assert run_main(capsys, "encrypt", "--key-name", names[0], p, tmp_path / "c") == (0, "", "")
    assert decrypted(raw, (tmp_path / "c").read_bytes()) == p.read_bytes()
    code, _, err = run_main(
        capsys,
        "decrypt",
        "--backend",
        "openssl",
        "--key-name",
        names[0],
        tmp_path / "c",
        tmp_path / "d",
    )
    assert code == 0 and (tmp_path / "d").read_bytes() == p.read_bytes()
    assert err.startswith(
        f"kstream: warning: --backend openssl reads user key 'kstream:{names[0]}'"
    )
    assert err.endswith(
        "out of the kernel keyring: the key's bytes now enter this process's memory\n"
    )


@pytest.mark.kernel
def test_the_environment_s_openssl_reads_no_keyring_key(
    names: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """KSTREAM_BACKEND=openssl is a host's default, not a decision to take a key out of the
    kernel: a keyring key then goes to the kernel as with auto, and a notice names the
    variable (only --backend openssl reads a user key out, as above)."""
    needs_key_serial()
    raw = os.urandom(32)
    add(names[0], raw, "user")
    p = tmp_path / "p"
    p.write_bytes(os.urandom(70001))
    monkeypatch.setenv("KSTREAM_BACKEND", "openssl")
    monkeypatch.setattr(keyring, "read_key_payload", lambda ref: pytest.fail("key was read"))
    code, _, err = run_main(capsys, "encrypt", "--key-name", names[0], p, tmp_path / "c")
    assert (code, err) == (
        0,
        f"kstream: notice: KSTREAM_BACKEND=openssl does not apply to "
        f"user key 'kstream:{names[0]}' (serial "
        f"{keyring.find_key(names[0]).serial}): only --backend openssl "
        "reads a keyring key out of the kernel; using the kernel\n",
    )
    assert decrypted(raw, (tmp_path / "c").read_bytes()) == p.read_bytes()


@pytest.mark.kernel
def test_key_list_rm_and_the_session_keyring(
    names: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Keyring management works on every kernel (6.1 included)."""
    a, b = names[:2]
    code, out, err = run_main(capsys, "key", "gen", a, "--bits", 192)
    assert code == 0
    assert "no copy exists anywhere else, so it is lost at reboot" in err
    serial_a = int(out)
    code, out, _ = run_main(capsys, "key", "gen", b, "--type", "user", "--keyring", "session", "-q")
    serial_b = int(out)
    code, out, _ = run_main(capsys, "key", "list", "--json")
    listed = {k["name"]: k for k in json.loads(out)}
    assert listed[a] == {
        **listed[a],
        "serial": serial_a,
        "type": "logon",
        "bits": 192,
        "keyrings": ["user"],
        "perm": "3d010000",
    }
    assert listed[b]["serial"] == serial_b and listed[b]["keyrings"] == ["session"]
    # The session keyring here is the per-user one, so another process finds the key too.
    found = kst("key", "list").stdout.decode()
    assert f"  {a}\n" in found and f"  {b}\n" in found
    assert Key.from_keyring(b).keyring_ref == KeyringRef(
        serial_b, "user", f"kstream:{b}", 32, "session"
    )
    code, out, _ = run_main(capsys, "key", "rm", a, "--yes")
    assert out == f"removed logon key 'kstream:{a}' (serial {serial_a})\n"
    code, out, err = run_main(capsys, "key", "rm", a)
    assert code == 2
    one_error(err, f"no key 'kstream:{a}' in the session or user keyring")
    code, out, _ = run_main(capsys, "key", "list", "--json")
    assert a not in {k["name"] for k in json.loads(out)}
