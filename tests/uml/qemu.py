"""Boot Debian's packaged amd64 kernels under QEMU and run the kernel tests inside them.

Why, next to User Mode Linux: UML kernels are not what users boot. They have only the generic C
AES, and no UML build of Linux 7.3 exists, whose ``crypto.af_alg_restrict=1`` default decides
who may use AF_ALG at all. QEMU with TCG (``-cpu max``: AES-NI, AVX2) boots the kernels Debian
ships, with their real ``ctr-aes-aesni*`` drivers and their real policy. KVM is not used: on
hosts that are themselves guests ``/dev/kvm`` cannot emulate what these kernels execute.

How a boot works: a tiny initramfs (static busybox and the 9p modules, decompressed) mounts the
host's root read-only over 9p and the boot's work directory read-write at its host path (the
report file goes there); tmpfs covers ``/tmp``, ``/var/tmp``, ``/run`` and ``/dev/shm``. Its
``/sbin/modprobe`` runs the host's modprobe inside that root on the kernel's module tree in
the cache (``modprobe -d``), so the kernel's module autoload works. The command then runs in a
chroot, as root or (a kernel's ``-user`` variant) as ``nobody`` through ``setpriv``, and the
guest powers off. Everything the tests see is the host's own interpreter and virtualenv.

Which tests run where (:data:`SMOKE`, ``KSTREAM_QEMU_FULL``): TCG emulates every instruction,
so a kernel test costs several times what it costs in UML; the whole kernel suite runs as root
on the kernels named by ``KSTREAM_QEMU_FULL`` (default 7.3, the new policy, and 6.12, Debian
stable's kernel), and every other (kernel, user) pair runs the smoke set: the harness smoke
tests, the AES-NI driver tests and the privilege policy tests of ``tests/kernel/``.

``.ci/install-qemu.sh`` fetches the kernels into ``$KSTREAM_QEMU_DIR``.
"""

from __future__ import annotations

import lzma
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from .bootcheck import CheckResult
from .harness import EXIT_MARKER, RELEASE_MARKER, BootResult, UmlBoot

ENV_QEMU_DIR = "KSTREAM_QEMU_DIR"
ENV_QEMU_KERNELS = "KSTREAM_QEMU_KERNELS"
ENV_QEMU_FULL = "KSTREAM_QEMU_FULL"
ENV_QEMU_REQUIRE = "KSTREAM_QEMU_REQUIRE"
ENV_IN_QEMU = "KSTREAM_IN_QEMU"
ENV_QEMU_KERNEL = "KSTREAM_QEMU_KERNEL"
ENV_QEMU_USER = "KSTREAM_QEMU_USER"
ENV_QEMU_TIMEOUT = "KSTREAM_QEMU_TIMEOUT"
DEFAULT_TIMEOUT = 1800.0
#: Per-test limit of the guest's pytest (``--timeout``): TCG runs many times slower than UML.
INNER_TEST_TIMEOUT = 900
DEFAULT_QEMU_DIR = Path("/var/cache/kstream-qemu")
DEFAULT_FULL = "7.3 6.12"
#: Test paths (relative to the rootdir) that every QEMU kernel and user runs.
SMOKE = ("tests/kernel/",)
QEMU = "qemu-system-x86_64"
BUSYBOX = ("/bin/busybox", "/usr/bin/busybox")
MEMORY_MIB = 2048
#: The unprivileged user (nobody on Debian).
NOBODY = 65534
#: Modules the initramfs loads to reach the host's root (some are built in on newer kernels).
BOOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p")
#: Where the guest's pytest keeps its temporary files: a tmpfs, not the 9p share.
GUEST_BASETEMP = "/tmp/kstream-basetemp"
MARK = "kstream-qemu:"
STARTED = f"{MARK} init started"
NO_QEMU_HINT = "qemu-system-x86_64 or busybox-static missing; run .ci/install-qemu.sh"
_VERSION = re.compile(r"^(\d+)\.(\d+)")


@dataclass(frozen=True)
class QemuKernel:
    """One packaged kernel, booted as root or, with ``user`` set, run as ``nobody``."""

    name: str  # major.minor, "7.3"
    label: str  # cache directory, "exp-7.3"
    vmlinuz: Path
    modules: Path  # <cache>/<label>/lib/modules
    release: str
    user: bool = False
    full: bool = False

    @property
    def id(self) -> str:
        return f"qemu-{self.name}" + ("-user" if self.user else "")

    @property
    def version(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.name.split("."))

    @property
    def binary(self) -> Path:
        return self.vmlinuz

    def matches(self, token: str) -> bool:
        return token in (self.name, self.id, self.label, self.id.removeprefix("qemu-"))

    def runs(self, nodeid: str) -> bool:
        """Whether the test at ``nodeid`` runs on this kernel and user (see :data:`SMOKE`)."""
        return (self.full and not self.user) or nodeid.startswith(SMOKE)


def cache_dir(env: Mapping[str, str] = os.environ) -> Path:
    return Path(env.get(ENV_QEMU_DIR) or DEFAULT_QEMU_DIR)


def busybox() -> str | None:
    return next((p for p in BUSYBOX if os.access(p, os.X_OK)), None)


def tools_missing() -> str | None:
    """Why no QEMU kernel can boot on this host, or None."""
    if shutil.which(QEMU) is None or busybox() is None:
        return NO_QEMU_HINT
    return None


def kernel_in(directory: Path) -> QemuKernel | None:
    """The kernel ``.ci/install-qemu.sh`` unpacked into ``directory``, if it is one."""
    vmlinuz = directory / "vmlinuz"
    modules = directory / "lib/modules"
    try:
        releases = sorted(d.name for d in modules.iterdir() if (d / "modules.dep").is_file())
    except OSError:
        return None
    match = _VERSION.match(releases[-1]) if releases else None
    if not vmlinuz.is_file() or match is None:
        return None
    return QemuKernel(f"{match[1]}.{match[2]}", directory.name, vmlinuz, modules, releases[-1])


def discover(env: Mapping[str, str] = os.environ) -> list[QemuKernel]:
    """Every cached kernel, root and user variant, filtered by ``KSTREAM_QEMU_KERNELS``
    ("none" for none; names, ids or labels otherwise)."""
    tokens = (env.get(ENV_QEMU_KERNELS) or "").replace(",", " ").split()
    if tokens == ["none"]:
        return []
    cache = cache_dir(env)
    found: dict[str, QemuKernel] = {}
    if cache.is_dir():
        for child in sorted(cache.iterdir()):
            kernel = None if child.name.startswith(".") else kernel_in(child)
            if kernel is not None:
                found.setdefault(kernel.name, kernel)
    full = (env.get(ENV_QEMU_FULL) or DEFAULT_FULL).replace(",", " ").split()
    kernels = []
    for kernel in sorted(found.values(), key=lambda k: k.version):
        kernel = replace(kernel, full="all" in full or kernel.name in full)
        kernels += [kernel, replace(kernel, user=True)]
    if tokens and tokens != ["all"]:
        kernels = [k for k in kernels if any(k.matches(t) for t in tokens)]
    return kernels


# --- the initramfs ----------------------------------------------------------------------------


def _cpio_entry(name: str, mode: int, data: bytes = b"", ino: int = 0) -> bytes:
    """One ``newc`` cpio record (what the kernel unpacks an initramfs from)."""
    encoded = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
    header = b"070701" + b"".join(b"%08X" % f for f in fields)
    pad = (-(len(header) + len(encoded)) % 4) * b"\0"
    return header + encoded + pad + data + (-len(data) % 4) * b"\0"


def module_order(modules_dir: Path, wanted: Sequence[str]) -> list[Path]:
    """The module files to load for ``wanted``, dependencies first (from ``modules.dep``);
    names the kernel has built in are left out."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
        by_name[re.sub(r"\.ko(\.\w+)?$", "", Path(path).name).replace("-", "_")] = path
    order: list[str] = []

    def visit(path: str) -> None:
        for dep in deps.get(path, []):
            visit(dep)
        if path not in order:
            order.append(path)

    for name in wanted:
        if name in by_name:
            visit(by_name[name])
    return [modules_dir / p for p in order]


def _module_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".xz":
        return lzma.decompress(data)
    if path.suffix == ".zst":
        return subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True).stdout
    return data


def init_script() -> str:
    """PID 1 in the initramfs: mount the host, run ``/work/run.sh`` in it, power off."""
    return f"""#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /newroot /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "{STARTED}"
for m in /modules/*.ko; do [ -e "$m" ] && insmod "$m"; done
p9="trans=virtio,version=9p2000.L,msize=512000,cache=loose"
mount -t 9p -o "$p9,ro" host /newroot || echo "{MARK} cannot mount the host root"
work=$(cat /workdir)
mkdir -p /dev/shm /dev/pts
for d in proc sys dev; do mount --bind /$d /newroot/$d; done
mount -t devpts devpts /newroot/dev/pts 2>/dev/null
for d in /dev/shm /run /tmp /var/tmp; do mount -t tmpfs -o mode=1777 tmpfs /newroot$d; done
# A checkout under one of those (CI's clone in /tmp, say) comes back from the host, read-only.
# (Tag and file names differ: busybox takes a source naming an existing file for a loop.)
cwd=$(cat /cwdpath 2>/dev/null)
case "$cwd" in /tmp/*|/var/tmp/*|/run/*|/dev/shm/*)
    mkdir -p "/newroot$cwd" && mount -t 9p -o "$p9,ro" checkout "/newroot$cwd" ;;
esac
mkdir -p "/newroot$work" && mount -t 9p -o "trans=virtio,version=9p2000.L,msize=512000" \\
    work "/newroot$work"
rm -f /sbin/modprobe
printf '#!/bin/sh\\nexec chroot /newroot /sbin/modprobe -d %s "$@"\\n' "$(cat /kernelroot)" \\
    >/sbin/modprobe
chmod 755 /sbin/modprobe
echo /sbin/modprobe >/proc/sys/kernel/modprobe
# What udev would load at boot for this CPU (aesni_intel & co.): the drivers users get.
/sbin/modprobe -q -a $(cat /sys/devices/system/cpu/modalias) 2>/dev/null
ip link set lo up 2>/dev/null
echo "{RELEASE_MARKER}$(uname -r)"
chroot /newroot /bin/sh "$work/run.sh"
echo "{EXIT_MARKER}$?"
sync
poweroff -f
"""


def build_initramfs(
    kernel: QemuKernel, target: Path, workdir: Path, cwd: Path | None = None
) -> Path:
    """Write the initramfs for ``kernel`` (busybox, its 9p modules, the init) to ``target``."""
    box = busybox()
    if box is None:
        raise FileNotFoundError(NO_QEMU_HINT)
    root = kernel.modules.parent.parent  # modprobe -d ROOT finds ROOT/lib/modules/<release>
    entries = [
        _cpio_entry("bin", stat.S_IFDIR | 0o755, ino=1),
        _cpio_entry("modules", stat.S_IFDIR | 0o755, ino=2),
        _cpio_entry("bin/busybox", stat.S_IFREG | 0o755, Path(box).read_bytes(), ino=3),
        _cpio_entry("init", stat.S_IFREG | 0o755, init_script().encode(), ino=4),
        _cpio_entry("workdir", stat.S_IFREG | 0o644, f"{workdir}\n".encode(), ino=5),
        _cpio_entry("kernelroot", stat.S_IFREG | 0o644, f"{root}\n".encode(), ino=6),
    ]
    if cwd is not None:
        entries.append(_cpio_entry("cwdpath", stat.S_IFREG | 0o644, f"{cwd}\n".encode(), ino=7))
    for n, module in enumerate(module_order(kernel.modules / kernel.release, BOOT_MODULES)):
        name = f"modules/{n:02d}-{module.name.split('.ko')[0]}.ko"
        entries.append(_cpio_entry(name, stat.S_IFREG | 0o644, _module_bytes(module), ino=10 + n))
    entries.append(_cpio_entry("TRAILER!!!", 0))
    target.write_bytes(b"".join(entries))
    return target


def run_script(
    kernel: QemuKernel, *, cwd: Path, argv: Sequence[str], env: Mapping[str, str], timeout: int
) -> str:
    """The command's script, run inside the guest's chroot (as ``nobody`` for ``-user``)."""
    q = shlex.quote
    exports = "\n".join(f"export {k}={q(v)}" for k, v in sorted(env.items()))
    command = " ".join(q(a) for a in argv)
    drop = opened = ""
    if kernel.user:
        drop = f"setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups --inh-caps=-all "
        for n, directory in enumerate(closed_directories()):
            ovl = f"/run/kstream-open/{n}"
            opened += (
                f"mkdir -p {ovl}/u {ovl}/w && mount -t overlay overlay -o "
                f"lowerdir={q(directory)},upperdir={ovl}/u,workdir={ovl}/w {q(directory)} "
                f"&& chmod o+rx {q(directory)}\n"
            )
    return f"""#!/bin/sh
{exports}
mkdir -p "$HOME" "$TMPDIR" && chown {NOBODY if kernel.user else 0} "$HOME" "$TMPDIR"
cd {q(str(cwd))} || exit 125
{opened}{drop}timeout -s KILL {timeout} {command}
"""


def closed_directories() -> list[str]:
    """Directories on the way to this interpreter and its imports that ``nobody`` cannot
    enter (a pyenv under a mode-700 /root, say). The user variant opens each in an overlay
    that exists only in the guest; the host is not touched."""
    found: list[str] = []
    paths = [Path(sys.executable).resolve(), *(Path(p).resolve() for p in sys.path if p)]
    for path in paths:
        for directory in reversed(path.parents):
            try:
                mode = directory.stat().st_mode
            except OSError:
                continue
            if not mode & stat.S_IXOTH and str(directory) not in found:
                found.append(str(directory))
    return found


def command_line(
    kernel: QemuKernel, initrd: Path, workdir: Path, cwd: Path | None = None
) -> list[str]:
    """QEMU's arguments: the host's root, the boot's work directory and (for the init to
    mount where tmpfs would hide it) the command's working directory, each over 9p."""
    share = "security_model=none,multidevs=remap"
    cwd_share = (
        []
        if cwd is None
        else ["-virtfs", f"local,path={cwd},mount_tag=checkout,{share},readonly=on"]
    )
    return [
        QEMU,
        "-accel",
        "tcg",
        "-cpu",
        "max",
        "-M",
        "pc",
        "-m",
        str(MEMORY_MIB),
        "-smp",
        "1",
        "-nodefaults",
        "-no-reboot",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-kernel",
        str(kernel.vmlinuz),
        "-initrd",
        str(initrd),
        "-append",
        "console=ttyS0 panic=-1 rdinit=/init loglevel=4",
        "-virtfs",
        f"local,path=/,mount_tag=host,{share},readonly=on",
        "-virtfs",
        f"local,path={workdir},mount_tag=work,{share}",
        *cwd_share,
    ]


def guest_environment(kernel: QemuKernel, env: Mapping[str, str]) -> dict[str, str]:
    """The UML harness's inner environment (``env``), adapted: the guest's tmpfs for
    temporary files and home, and the QEMU markers instead of UML's."""
    out = {k: v for k, v in env.items() if not k.startswith(("KSTREAM_UML_", "KSTREAM_QEMU_"))}
    out.pop("KSTREAM_IN_UML", None)
    out.update(
        {
            ENV_IN_QEMU: "1",
            ENV_QEMU_KERNEL: kernel.name,
            ENV_QEMU_USER: "nobody" if kernel.user else "root",
            "TMPDIR": "/tmp/kstream-tmp",
            "HOME": "/tmp/home",
            "HYPOTHESIS_STORAGE_DIRECTORY": "/tmp/hypothesis",
        }
    )
    if "KSTREAM_UML_REPORT" in env:
        out["KSTREAM_UML_REPORT"] = env["KSTREAM_UML_REPORT"]
    return out


def spawn(
    kernel: QemuKernel, workdir: Path, console_log: Path, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start QEMU for ``kernel`` with the initramfs and run.sh already in ``workdir``."""
    workdir.chmod(0o777)  # nobody in the guest writes its report here
    with console_log.open("wb") as log:
        return subprocess.Popen(
            command_line(kernel, workdir / "initrd.cpio", workdir, cwd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            start_new_session=True,
        )


def reached_init(console: str) -> bool:
    return STARTED in console.splitlines()


# --- whether a kernel boots ------------------------------------------------------------------


def tools_check(kernels: Sequence[QemuKernel]) -> dict[str, CheckResult]:
    """Without QEMU or busybox no QEMU kernel can run: each is skipped with that reason.
    Otherwise nothing is decided here: a kernel's first boot tells (see :func:`booted`)."""
    tools = tools_missing()
    if tools is None:
        return {}
    return {
        k.id: CheckResult(
            k,  # type: ignore[arg-type]
            "cannot-run",
            tools,
            k.release,
            Path("/dev/null"),
            0.0,
        )
        for k in kernels
    }


def booted(result: BootResult) -> bool:
    """Whether the guest got as far as its init (after :class:`QemuBoot`'s one retry); one
    that did not is a kernel this host cannot boot, and its tests are skipped with why."""
    return result.start_error is None and (
        reached_init(result.console_text()) or result.timed_out or result.stopped
    )


def not_booted_reason(result: BootResult) -> str:
    if result.start_error is not None:
        return f"cannot start {QEMU}: {result.start_error}"
    last = next(
        (ln.strip() for ln in reversed(result.console_text().splitlines()) if ln.strip()),
        "no console output",
    )
    return f"cannot boot under QEMU (TCG) on this host, twice: {last}"


def boot_timeout(env: Mapping[str, str] = os.environ) -> float:
    return float(env.get(ENV_QEMU_TIMEOUT) or DEFAULT_TIMEOUT)


class QemuBoot(UmlBoot):
    """One boot of a QEMU kernel running the inner pytest; the UML boot's interface and
    result (:class:`~.harness.BootResult`), with the guest's environment. A boot that ends
    without the command having started (the console of such a boot sometimes stops early) is
    retried once."""

    def __init__(
        self,
        kernel: QemuKernel,
        workdir: Path,
        *,
        argv: Sequence[str],
        cwd: Path,
        timeout: float,
    ) -> None:
        super().__init__(kernel, workdir, argv=argv, cwd=cwd, timeout=timeout)  # type: ignore[arg-type]
        self.qemu_kernel = kernel
        self.env = guest_environment(kernel, self.env)
        self._retried = False

    def prepare(self) -> Path:
        initrd = build_initramfs(
            self.qemu_kernel, self.workdir / "initrd.cpio", self.workdir, Path(self.cwd)
        )
        deadline = max(1, int(self.timeout - min(60.0, self.timeout / 4)))
        script = run_script(
            self.qemu_kernel, cwd=self.cwd, argv=self.argv, env=self.env, timeout=deadline
        )
        (self.workdir / "run.sh").write_text(script)
        self.report_path.unlink(missing_ok=True)
        return initrd

    def launch(self) -> subprocess.Popen[bytes]:
        self.prepare()
        return spawn(self.qemu_kernel, self.workdir, self.console_log, Path(self.cwd))

    def wait(self) -> BootResult:
        result = super().wait()
        never_ran = result.inner_status is None and not result.report.tests
        ended_by_itself = not (result.timed_out or result.stopped or result.start_error)
        if result.problem and never_ran and ended_by_itself and not self._retried:
            self._retried = True
            self.console_log.rename(self.workdir / "console.first-attempt.log")
            self._result = None
            self._proc = None
            self._started = 0.0
            return super().wait()
        return result
