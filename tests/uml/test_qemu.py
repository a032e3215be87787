"""Host-side tests of the QEMU half of the harness; none boots a kernel.

They check what decides where tests run (discovery, the full/smoke split, the user
variant), and what a boot is given (the module order, the initramfs read back as the kernel
would unpack it, the script that drops to ``nobody``).
"""

from __future__ import annotations

import lzma
import stat
from pathlib import Path
from typing import ClassVar

import pytest

from . import qemu
from .harness import BootResult
from .report import InnerReport


def fake_kernel(cache: Path, label: str, release: str, dep: str = "") -> Path:
    root = cache / label
    modules = root / "lib/modules" / release
    modules.mkdir(parents=True)
    (modules / "modules.dep").write_text(dep)
    (root / "vmlinuz").write_bytes(b"not a kernel")
    return root


def test_discovery_variants_and_the_full_suite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_kernel(tmp_path, "exp-7.3", "7.3-amd64")
    fake_kernel(tmp_path, "deb12-6.1", "6.1.0-50-amd64")
    fake_kernel(tmp_path, "deb13-6.12", "6.12.117+deb13-amd64")
    (tmp_path / ".apt").mkdir()
    (tmp_path / "broken").mkdir()  # no vmlinuz, no modules: not a kernel
    env = {qemu.ENV_QEMU_DIR: str(tmp_path)}
    kernels = qemu.discover(env)
    assert [(k.id, k.label, k.release, k.full) for k in kernels] == [
        ("qemu-6.1", "deb12-6.1", "6.1.0-50-amd64", False),
        ("qemu-6.1-user", "deb12-6.1", "6.1.0-50-amd64", False),
        ("qemu-6.12", "deb13-6.12", "6.12.117+deb13-amd64", True),
        ("qemu-6.12-user", "deb13-6.12", "6.12.117+deb13-amd64", True),
        ("qemu-7.3", "exp-7.3", "7.3-amd64", True),
        ("qemu-7.3-user", "exp-7.3", "7.3-amd64", True),
    ]
    assert [k.id for k in qemu.discover({**env, qemu.ENV_QEMU_KERNELS: "7.3-user,6.1"})] == [
        "qemu-6.1",
        "qemu-6.1-user",
        "qemu-7.3-user",
    ]
    assert qemu.discover({**env, qemu.ENV_QEMU_KERNELS: "none"}) == []
    everything = qemu.discover({**env, qemu.ENV_QEMU_FULL: "all"})
    assert all(k.full for k in everything)


def test_which_tests_a_kernel_runs(tmp_path: Path) -> None:
    """Root on a full kernel: all; root elsewhere and every user variant: tests/kernel/."""
    fake_kernel(tmp_path, "exp-7.3", "7.3-amd64")
    fake_kernel(tmp_path, "sid-7.2", "7.2.13+deb14-amd64")
    k72, k72_user, k73, k73_user = qemu.discover({qemu.ENV_QEMU_DIR: str(tmp_path)})
    other = "tests/backends/kernel/test_ctr.py::test_x"
    smoke = "tests/kernel/test_policy.py::test_y"
    assert (k73.runs(other), k73.runs(smoke)) == (True, True)
    assert (k73_user.runs(other), k73_user.runs(smoke)) == (False, True)
    assert (k72.runs(other), k72.runs(smoke)) == (False, True)
    assert (k72_user.runs(other), k72_user.runs(smoke)) == (False, True)


DEP = (
    "kernel/fs/9p/9p.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/fs/netfs/netfs.ko.xz\n"
    "kernel/net/9p/9pnet_virtio.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/fs/netfs/netfs.ko.xz\n"
    "kernel/net/9p/9pnet.ko.xz: kernel/fs/netfs/netfs.ko.xz\n"
    "kernel/fs/netfs/netfs.ko.xz:\n"
)


def test_modules_load_dependencies_first_and_skip_built_ins(tmp_path: Path) -> None:
    """virtio_pci is built into 7.3 (not in modules.dep): nothing to load for it."""
    root = fake_kernel(tmp_path, "exp-7.3", "7.3-amd64", DEP)
    order = qemu.module_order(root / "lib/modules/7.3-amd64", qemu.BOOT_MODULES)
    assert [p.name for p in order] == [
        "netfs.ko.xz",
        "9pnet.ko.xz",
        "9pnet_virtio.ko.xz",
        "9p.ko.xz",
    ]


def read_newc(data: bytes) -> dict[str, tuple[int, bytes]]:
    """Entries of a ``newc`` cpio archive, name -> (mode, data), read as the kernel does."""
    entries: dict[str, tuple[int, bytes]] = {}
    pos = 0
    while True:
        assert data[pos : pos + 6] == b"070701"
        fields = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name_at = pos + 110
        name = data[name_at : name_at + namesize - 1].decode()
        body_at = name_at + namesize + (-(110 + namesize) % 4)
        if name == "TRAILER!!!":
            return entries
        entries[name] = (mode, data[body_at : body_at + size])
        pos = body_at + size + (-size % 4)


def test_the_initramfs(tmp_path: Path) -> None:
    if qemu.busybox() is None:
        pytest.skip("no busybox here (.ci/install-qemu.sh installs busybox-static)")
    root = fake_kernel(tmp_path / "cache", "exp-7.3", "7.3-amd64", DEP)
    for rel in ("kernel/fs/9p/9p", "kernel/net/9p/9pnet_virtio", "kernel/net/9p/9pnet"):
        path = root / "lib/modules/7.3-amd64" / f"{rel}.ko.xz"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(lzma.compress(f"module {rel}".encode()))
    netfs = root / "lib/modules/7.3-amd64/kernel/fs/netfs/netfs.ko.xz"
    netfs.parent.mkdir(parents=True)
    netfs.write_bytes(lzma.compress(b"module netfs"))
    [kernel, _] = qemu.discover({qemu.ENV_QEMU_DIR: str(tmp_path / "cache")})
    work = tmp_path / "work"
    work.mkdir()
    entries = read_newc(qemu.build_initramfs(kernel, tmp_path / "initrd", work).read_bytes())
    assert entries["workdir"][1] == f"{work}\n".encode()
    assert entries["kernelroot"][1] == f"{root}\n".encode()
    init_mode, init = entries["init"]
    assert stat.S_ISREG(init_mode) and init_mode & 0o111
    assert init.startswith(b"#!/bin/busybox sh\n")
    assert b"-accel" not in init and b"modprobe -d %s" in init
    assert b"/sys/devices/system/cpu/modalias" in init  # what udev would load: aesni_intel
    modules = sorted(name for name in entries if name.startswith("modules/"))
    assert modules == [
        "modules/00-netfs.ko",
        "modules/01-9pnet.ko",
        "modules/02-9pnet_virtio.ko",
        "modules/03-9p.ko",
    ]
    assert entries["modules/03-9p.ko"][1] == b"module kernel/fs/9p/9p"  # decompressed


def test_the_user_variant_drops_to_nobody(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_kernel(tmp_path, "exp-7.3", "7.3-amd64")
    root, user = qemu.discover({qemu.ENV_QEMU_DIR: str(tmp_path)})
    monkeypatch.setattr(qemu, "closed_directories", lambda: ["/root"])
    env = {"HOME": "/tmp/home", "TMPDIR": "/tmp/kstream-tmp"}
    as_user = qemu.run_script(
        user, cwd=Path("/src"), argv=["python3", "-m", "pytest"], env=env, timeout=9
    )
    assert "setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all timeout" in as_user
    assert "lowerdir=/root," in as_user and "chmod o+rx /root" in as_user
    as_root = qemu.run_script(root, cwd=Path("/src"), argv=["python3"], env=env, timeout=9)
    assert "setpriv" not in as_root and "overlay" not in as_root
    guest = qemu.guest_environment(user, {"KSTREAM_IN_UML": "1", "KSTREAM_UML_KERNEL": "7.3"})
    assert guest[qemu.ENV_IN_QEMU] == "1" and guest[qemu.ENV_QEMU_USER] == "nobody"
    assert "KSTREAM_IN_UML" not in guest and "KSTREAM_UML_KERNEL" not in guest


def test_a_guest_that_never_reached_init_is_a_skip_with_why(tmp_path: Path) -> None:
    fake_kernel(tmp_path, "exp-7.3", "7.3-amd64")
    [kernel, _] = qemu.discover({qemu.ENV_QEMU_DIR: str(tmp_path)})
    console = tmp_path / "console.log"

    def result(text: str, **kw: object) -> BootResult:
        console.write_text(text)
        fields: dict[str, object] = {
            "returncode": 0,
            "timed_out": False,
            "duration": 1.0,
            "timeout": 60.0,
            **kw,
        }
        return BootResult(kernel, tmp_path, console, InnerReport(), **fields)  # type: ignore[arg-type]

    assert not qemu.booted(result("SeaBIOS\nKernel panic - not syncing: VFS\n"))
    assert qemu.not_booted_reason(result("SeaBIOS\nKernel panic - not syncing: VFS\n")) == (
        "cannot boot under QEMU (TCG) on this host, twice: Kernel panic - not syncing: VFS"
    )
    assert qemu.booted(result(f"{qemu.STARTED}\n"))
    assert qemu.booted(result("", timed_out=True))  # a hang is a failure, not a skip
    gone = result("", start_error="no such file")
    assert not qemu.booted(gone)
    assert qemu.not_booted_reason(gone) == "cannot start qemu-system-x86_64: no such file"


class FakeBoot:
    def __init__(self, result: BootResult) -> None:
        self.result = result

    def wait(self) -> BootResult:
        return self.result


def test_qemu_require_is_judged_from_the_boots_that_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KSTREAM_QEMU_REQUIRE=6.2 fails the run unless a kernel >= 6.2 completed its tests;
    with no QEMU test selected (e.g. -m 'not kernel') there is nothing to judge."""
    from . import plugin

    fake_kernel(tmp_path, "deb12-6.1", "6.1.0-50-amd64")
    fake_kernel(tmp_path, "exp-7.3", "7.3-amd64")
    k61, _, k73, _ = qemu.discover({qemu.ENV_QEMU_DIR: str(tmp_path)})
    console = tmp_path / "console.log"
    console.write_text("")

    def boot(kernel: qemu.QemuKernel, finished: bool) -> FakeBoot:
        report = InnerReport(finished=finished)
        return FakeBoot(BootResult(kernel, tmp_path, console, report, 0, False, 1.0, 60.0))  # type: ignore[arg-type]

    class Runner:
        boots: ClassVar[dict[str, FakeBoot]] = {}

    state = plugin.State(plugin.Mode.UML, [k61, k73], runner=Runner())  # type: ignore[arg-type]
    monkeypatch.setenv(qemu.ENV_QEMU_REQUIRE, "6.2")
    assert plugin.qemu_requirement_unmet(state) is None  # nothing selected, nothing booted
    Runner.boots = {k61.id: boot(k61, True), k73.id: boot(k73, False)}
    unmet = plugin.qemu_requirement_unmet(state)
    assert unmet is not None
    assert unmet.startswith("KSTREAM_QEMU_REQUIRE=6.2: no QEMU kernel >= 6.2 ran its tests")
    assert "qemu-7.3: the kernel exited (status 0) before the inner pytest finished" in unmet
    Runner.boots[k73.id] = boot(k73, True)
    assert plugin.qemu_requirement_unmet(state) is None
    monkeypatch.delenv(qemu.ENV_QEMU_REQUIRE)
    Runner.boots[k73.id] = boot(k73, False)
    assert plugin.qemu_requirement_unmet(state) is None
