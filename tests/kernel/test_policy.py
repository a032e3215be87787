"""Who may use the kernel path: Linux 7.3's ``crypto.af_alg_restrict`` for real.

At 1 (7.3's default) only a process with CAP_NET_ADMIN (or CAP_SYS_ADMIN) may bind
``ctr(aes)`` and ``hmac(sha256)``; no process may bind a driver by its name. Each test reads
what this kernel and this process are (the sysctl, the capabilities) and checks what kstream
does: in QEMU it runs as root and as ``nobody`` on 7.3 and on kernels without the policy.
Tests that change the sysctl or unload modules run as root inside a throwaway kernel only.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from clirun import KST, one_error

from kstream.backends.kernel.sockets import AF_ALG_RESTRICT, af_alg_privileged

pytestmark = pytest.mark.kernel

WAYS_OUT = (
    "run as root or from a systemd unit with AmbientCapabilities=CAP_NET_ADMIN, or set "
    "sysctl crypto.af_alg_restrict=0"
)
NOTICE = "kstream: notice: kernel backend unavailable here; using openssl"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def restrict() -> int | None:
    """The sysctl, read after an AF_ALG socket has loaded af_alg (7.3 adds it only then)."""
    with contextlib.suppress(OSError):
        socket.socket(socket.AF_ALG, socket.SOCK_SEQPACKET).close()
    try:
        return int(Path(AF_ALG_RESTRICT).read_text())
    except (OSError, ValueError):
        return None


def refused() -> bool:
    """Whether the policy keeps the kernel path from this process."""
    return restrict() == 1 and not af_alg_privileged()


def in_vm_as_root() -> bool:
    in_vm = "1" in (os.environ.get("KSTREAM_IN_QEMU"), os.environ.get("KSTREAM_IN_UML"))
    return in_vm and os.geteuid() == 0


def run(
    *args: object, prefix: list[str] | None = None, **kw: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [*(prefix or []), *KST, *map(str, args)], capture_output=True, text=True, timeout=300, **kw
    )


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory every user can write (a child run as nobody reads and writes there)."""
    path = Path(tempfile.mkdtemp(prefix="kstream-policy-", dir="/tmp"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def files(where: Path, size: int = 300_000, owner: int | None = None) -> tuple[Path, Path, bytes]:
    """A key (mode 0600, owned by ``owner`` if given: the user who runs kstream) and a
    plaintext file that everyone may read."""
    key, plain = where / "key", os.urandom(size)
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    if owner is not None:
        os.chown(key, owner, owner)
    (where / "plain").write_bytes(plain)
    (where / "plain").chmod(0o644)
    return key, where / "plain", plain


def decrypts_to(where: Path, key: Path, encrypted: Path, plain: bytes) -> bool:
    proc = run("decrypt", "--backend", "openssl", "-k", key, encrypted, where / "back")
    back = (where / "back").read_bytes() if proc.returncode == 0 else b""
    (where / "back").unlink(missing_ok=True)
    return back == plain


def kernel_or_policy_error(proc: subprocess.CompletedProcess[str], works: bool) -> None:
    """A run with the kernel path forced: success where it works, else exit 3 and one line
    that names both ways out."""
    if works:
        assert proc.returncode == 0, proc.stderr
        return
    assert proc.returncode == 3, proc.stderr
    line = one_error(proc.stderr, "crypto.af_alg_restrict=1 lets only processes with CAP_NET_ADMIN")
    assert WAYS_OUT in line


def test_this_process_gets_what_the_policy_allows(shared: Path) -> None:
    """--backend kernel works or fails with one line naming both ways out; auto falls back
    with its notice; ``kstream backends`` says what this process may use."""
    works = not refused()
    key, plain_path, plain = files(shared)
    out = shared / "out.kst"
    kernel_or_policy_error(run("encrypt", "--backend", "kernel", "-k", key, plain_path, out), works)
    if works:
        assert decrypts_to(shared, key, out, plain)
    out.unlink(missing_ok=True)

    proc = run("encrypt", "-k", key, plain_path, out)
    assert proc.returncode == 0, proc.stderr
    assert (NOTICE in proc.stderr) is not works, proc.stderr
    assert decrypts_to(shared, key, out, plain)

    report = json.loads(run("backends", "--json").stdout)
    process = report["kernel"]["process"]
    assert process["uid"] == os.geteuid()
    assert process["may_use_kernel"] is works
    assert report["auto"] == ("kernel" if works else "openssl")
    assert report["kernel"]["af_alg_restrict"] == restrict()
    text = run("backends").stdout
    line = next(ln for ln in text.splitlines() if ln.startswith("  this process:"))
    if works:
        assert line.endswith("may use the kernel backend"), line
    else:
        assert process["refused"] == ["ctr(aes)", "hmac(sha256)"]
        assert line == (
            f"  this process:    uid {os.geteuid()}, no CAP_NET_ADMIN: may not bind ctr(aes), "
            "hmac(sha256) (af_alg_restrict=1; run with CAP_NET_ADMIN)"
        )


def test_a_keyring_key_under_the_policy(shared: Path) -> None:
    """--key-name: the kernel path or one line naming both ways out, never a fallback."""
    if os.uname().release.startswith("6.1."):
        pytest.skip("keys by serial need Linux 6.2 (tests/keys cover 6.1's error)")
    key, plain_path, plain = files(shared)
    name = f"policy{uuid.uuid4().hex[:8]}"
    assert run("key", "add", name, key, "-q").returncode == 0
    try:
        out = shared / "out.kst"
        proc = run("encrypt", "--key-name", name, plain_path, out)
        kernel_or_policy_error(proc, not refused())
        if not refused():
            assert decrypts_to(shared, key, out, plain)
    finally:
        run("key", "rm", name, "-q")


@pytest.fixture
def root_on_7_3() -> Iterator[None]:
    """Root in a throwaway 7.3 guest; the sysctl is put back to 1 afterwards."""
    if not in_vm_as_root() or restrict() is None:
        pytest.skip("changes crypto.af_alg_restrict: as root inside a kernel >= 7.3 only")
    yield
    Path(AF_ALG_RESTRICT).write_text("1\n")


def test_root_on_7_3_uses_the_kernel_for_everything(
    root_on_7_3: None, shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 1, root gets the whole kernel path: file, pipe, -j, a keyring key, a durable key."""
    assert restrict() == 1  # the default
    key, plain_path, plain = files(shared, 3_000_000)
    for extra in ([], ["-j", "3"], ["--verify"]):
        out = shared / "out.kst"
        proc = run("encrypt", "--backend", "kernel", *extra, "-k", key, plain_path, out)
        assert proc.returncode == 0, proc.stderr
        assert decrypts_to(shared, key, out, plain)
        out.unlink()
    piped = subprocess.run(
        [*KST, "encrypt", "--backend", "kernel", "-k", str(key)], input=plain, capture_output=True
    )
    assert piped.returncode == 0, piped.stderr
    back = subprocess.run(
        [*KST, "decrypt", "--backend", "openssl", "-k", str(key)],
        input=piped.stdout,
        capture_output=True,
    )
    assert back.stdout == plain

    monkeypatch.setenv("XDG_DATA_HOME", str(shared / "xdg"))
    tag = uuid.uuid4().hex[:8]
    master, durable = f"m{tag}", f"d{tag}"
    (shared / "mk").write_bytes(os.urandom(32))
    assert run("key", "add", master, shared / "mk", "--type", "user", "-q").returncode == 0
    try:
        proc = run("key", "gen", durable, "--durable", "--master", master)
        assert proc.returncode == 0, proc.stderr
        out = shared / "durable.kst"
        proc = run("encrypt", "--key-name", durable, "--verify", plain_path, out)
        assert proc.returncode == 0, proc.stderr
        proc = run("decrypt", "--key-name", durable, out, shared / "back")
        assert proc.returncode == 0, proc.stderr
        assert (shared / "back").read_bytes() == plain
    finally:
        run("key", "rm", durable, "-q")
        run("key", "rm", master, "-q")


def test_both_ways_out_work_for_an_unprivileged_process(root_on_7_3: None, shared: Path) -> None:
    """The two ways the error names, tried: CAP_NET_ADMIN as an ambient capability (what a
    systemd unit with AmbientCapabilities=CAP_NET_ADMIN gives a service user), and the
    sysctl at 0; without either, the same process is refused."""
    key, plain_path, plain = files(shared, owner=65534)
    out = shared / "out.kst"
    args = ("encrypt", "--backend", "kernel", "-k", key, plain_path, out)
    no_caps = [*NOBODY, "--inh-caps=-all"]
    kernel_or_policy_error(run(*args, prefix=no_caps), works=False)
    with_cap = [*NOBODY, "--inh-caps=+net_admin", "--ambient-caps=+net_admin"]
    proc = run(*args, prefix=with_cap)
    assert proc.returncode == 0, proc.stderr
    assert decrypts_to(shared, key, out, plain)
    out.unlink()
    Path(AF_ALG_RESTRICT).write_text("0\n")
    proc = run(*args, prefix=no_caps)
    assert proc.returncode == 0, proc.stderr
    assert decrypts_to(shared, key, out, plain)


def test_af_alg_restrict_2_means_no_sockets(root_on_7_3: None, shared: Path) -> None:
    """At 2 even root gets no AF_ALG socket: kernel fails saying so, auto falls back."""
    key, plain_path, plain = files(shared)
    Path(AF_ALG_RESTRICT).write_text("2\n")
    out = shared / "out.kst"
    proc = run("encrypt", "--backend", "kernel", "-k", key, plain_path, out)
    assert proc.returncode == 3
    one_error(proc.stderr, "crypto.af_alg_restrict=2 disables them; set it to 1 or 0 to allow")
    proc = run("encrypt", "-k", key, plain_path, out)
    assert proc.returncode == 0 and NOTICE in proc.stderr, proc.stderr
    assert decrypts_to(shared, key, out, plain)
    report = json.loads(run("backends", "--json").stdout)
    assert report["kernel"]["af_alg"] == {
        "available": False,
        "error": "EAFNOSUPPORT",
        "reason": "EAFNOSUPPORT: crypto.af_alg_restrict=2 disables AF_ALG",
    }


def test_the_sysctl_appears_with_af_alg(root_on_7_3: None) -> None:
    """Before af_alg loads there is no sysctl to read; ``kstream backends`` still reports the
    policy that applies, because it opens a socket (loading af_alg) before it reads it."""
    loaded = [ln.split()[0] for ln in Path("/proc/modules").read_text().splitlines()]
    for module in [m for m in loaded if m.startswith("algif_")] + ["af_alg"]:
        if module in loaded:
            proc = subprocess.run(["rmmod", module], capture_output=True, text=True)
            if proc.returncode != 0:
                pytest.skip(f"cannot unload {module} here: {proc.stderr.strip()}")
    assert not Path(AF_ALG_RESTRICT).exists()
    report = json.loads(run("backends", "--json").stdout)
    assert report["kernel"]["af_alg_restrict"] == 1
    assert report["auto"] == "kernel"
    assert Path(AF_ALG_RESTRICT).read_text().strip() == "1"


def test_drivers_by_name_are_refused_even_to_root(root_on_7_3: None) -> None:
    """7.3's allowlist holds algorithm names: --driver fails with what to do instead, and
    selftest tests the kernel's pick through ctr(aes) and says why the others are left out."""
    report = json.loads(run("backends", "--json").stdout)
    [ctr] = [a for a in report["algorithms"] if a["name"] == "ctr(aes)"]
    pick = ctr["picked"]
    assert pick.startswith("ctr-aes-aesni"), ctr  # -cpu max has AES-NI; udev's module loaded
    proc = run("encrypt", "--driver", pick, "-k", "/dev/null")
    assert proc.returncode in (2, 3), proc.stderr
    proc = run("selftest", "--json")
    assert proc.returncode == 0, proc.stdout[-3000:]
    rows = json.loads(proc.stdout)["rows"]
    kernel = {(r["implementation"], r["status"]) for r in rows if r["backend"] == "kernel"}
    assert (pick, "ok") in kernel
    others = [d["driver"] for d in ctr["drivers"] if d["driver"] != pick]
    assert others
    for driver in others:
        assert (driver, "skipped") in kernel
    Path(AF_ALG_RESTRICT).write_text("0\n")
    proc = run("selftest", "--json")
    assert proc.returncode == 0
    rows = json.loads(proc.stdout)["rows"]
    assert {r["implementation"] for r in rows if r["status"] == "ok"} >= {pick, *others}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))
