"""Can this User Mode Linux kernel run here at all? One boot with a trivial init tells.

The one boot check, shared by ``.ci/install-uml.sh`` (run as a script:
``python3 tests/uml/bootcheck.py ROOT...``) and the pytest harness (``harness.py`` imports it),
so both always agree on which kernels are usable. Standard library only, and no imports of the
rest of the harness, because the install script runs it before any virtualenv exists.

Why a kernel may not run: UML kernels older than about 6.13 restore the guest's FPU state with
PTRACE_SETREGSET from a fixed-size XSAVE buffer, and the host kernel accepts only its CPU's full
XSAVE size. On hosts whose XSAVE state is larger (Intel CPUs with AMX tile state) the call fails
with EFAULT, the first user process dies ("ptrace set fp regs failed, errno = 14") and the
kernel panics. Every kernel is therefore started with ``xstate_shim.c`` preloaded (built here
with the host's C compiler), which completes such a call to the full size; a kernel that still
fails that way (no compiler, or the shim did not help) is a property of the host CPU and that
UML build, not of kstream, and is reported as skipped. Any other failure is a real one, and that
kernel's tests fail.

The trivial init prints a marker as its very first command, so "never reached init" and "init
ran, then something broke" are told apart by the console alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

#: Memory of a boot: tests push 64 MiB streams; 512M leaves room for those and Python.
MEMORY_MIB = 512
#: Loaded by the check, in modules.dep order (7.2 needs crypto_skcipher before ctr, which
#: modprobe resolves from modules.dep).
CHECK_MODULES = ("af_alg", "algif_skcipher", "ctr")
CHECK_TIMEOUT = 120.0
MARK = "kstream-uml-check:"
STARTED = f"{MARK} init started"
RELEASE = f"{MARK} release "
MODULES_OK = f"{MARK} modprobe ok"
AF_ALG_OK = f"{MARK} af_alg ok"
FP_REGS = "ptrace set fp regs failed"
CPU_REASON = (
    "cannot run on this host CPU: ptrace set fp regs failed "
    "(host XSAVE state larger than this UML build supports)"
)
SHIM_SOURCE = Path(__file__).with_name("xstate_shim.c")
NO_SHIM = f" and {SHIM_SOURCE.name} could not be built (no C compiler?)"
SHIM_FAILED = f" even with {SHIM_SOURCE.name} preloaded"
BIND_CTR_AES = (
    "import socket; s = socket.socket(socket.AF_ALG, socket.SOCK_SEQPACKET); "
    "s.bind(('skcipher', 'ctr(aes)'))"
)

Status = Literal["ok", "cannot-run", "broken"]
_VERSION = re.compile(r"^(\d+)\.(\d+)")


@dataclass(frozen=True)
class UmlKernel:
    """One kernel tree: ``name`` is its major.minor ("6.12"), used in test ids."""

    name: str
    label: str
    binary: Path
    modules: Path

    @property
    def id(self) -> str:
        """The suffix host test ids get, e.g. ``uml-6.12``."""
        return f"uml-{self.name}"

    @property
    def version(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.name.split("."))

    def releases(self) -> list[str]:
        """Module directories (normally exactly one: the kernel's ``uname -r``)."""
        return module_releases(self.modules)

    def matches(self, token: str) -> bool:
        """Whether a ``KSTREAM_UML_KERNELS`` entry names this kernel."""
        return token in (self.name, self.id, self.label)


def module_releases(modules: Path) -> list[str]:
    try:
        found = [d.name for d in modules.iterdir() if (d / "modules.dep").is_file()]
    except OSError:
        return []
    return sorted(found, key=_release_key)


def _release_key(release: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", release)[:3])


def kernel_at(root: Path, label: str) -> UmlKernel | None:
    """The kernel unpacked under ``root``, or None if that is not a usable kernel tree.

    Layout, as Debian's ``user-mode-linux`` package has it: ``<root>/usr/bin/linux.uml`` and
    ``<root>/usr/lib/uml/modules/<release>/modules.dep``.
    """
    binary = root / "usr/bin/linux.uml"
    modules = root / "usr/lib/uml/modules"
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        return None
    releases = module_releases(modules)
    match = _VERSION.match(releases[-1]) if releases else None
    if match is None:
        return None
    return UmlKernel(f"{match[1]}.{match[2]}", label, binary, modules)


# --- what every boot needs ------------------------------------------------------------------------


def find_modprobe() -> str:
    found = shutil.which("modprobe", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if found is None:
        raise FileNotFoundError("modprobe not found: install kmod (.ci/install-uml.sh)")
    return found


def prepare_modules(kernel: UmlKernel, workdir: Path) -> Path:
    """A modprobe wrapper pointed at the kernel's module tree (the host has no
    /lib/modules/<its release>); returns the wrapper's path."""
    modroot = workdir / "modroot" / "lib" / "modules"
    modroot.mkdir(parents=True, exist_ok=True)
    for release in kernel.releases():
        link = modroot / release
        if not link.is_symlink():
            link.symlink_to(kernel.modules / release)
    helper = workdir / "modprobe"
    helper.write_text(
        f"#!/bin/sh\nexec {shlex.quote(find_modprobe())} "
        f'-d {shlex.quote(str(modroot.parent.parent))} "$@"\n'
    )
    helper.chmod(0o755)
    return helper


def kernel_command_line(kernel: UmlKernel, init: Path) -> list[str]:
    return [
        str(kernel.binary),
        f"mem={MEMORY_MIB}M",
        "root=/dev/root",
        "rootfstype=hostfs",
        "rootflags=/",
        "rw",
        f"init={init}",
        "con=null",
        "con0=fd:0,fd:1",
    ]


def memory_dir(fallback: Path, env: Mapping[str, str] = os.environ) -> str:
    """Where UML creates the file that backs its RAM (it looks at TMPDIR, else /dev/shm).

    The file is sparse, and the kernel dies of SIGBUS when it cannot grow, which happens in
    containers, whose /dev/shm is 64 MB by default. So: the first of TMPDIR, /dev/shm, /tmp
    with room for all of it, else ``fallback`` (on disk: slower, but it works).
    """
    need = (MEMORY_MIB + 64) << 20
    for candidate in (env.get("TMPDIR"), "/dev/shm", "/tmp"):
        if not candidate:
            continue
        try:
            stat = os.statvfs(candidate)
        except OSError:
            continue
        if stat.f_bavail * stat.f_frsize >= need and os.access(candidate, os.W_OK | os.X_OK):
            return candidate
    return str(fallback)


def c_compiler() -> str | None:
    """The host's C compiler for ``xstate_shim.c``, if it has one."""
    return shutil.which("cc") or shutil.which("gcc")


def xstate_shim(workdir: Path) -> Path | None:
    """Build ``xstate_shim.c`` into ``workdir``; its path, or None without a working compiler."""
    compiler = c_compiler()
    if compiler is None:
        return None
    shim = workdir / "xstate_shim.so"
    try:
        subprocess.run(
            [compiler, "-O2", "-shared", "-fPIC", "-o", str(shim), str(SHIM_SOURCE), "-ldl"],
            check=True,
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return shim


def spawn(
    kernel: UmlKernel,
    init: Path,
    workdir: Path,
    console_log: Path,
    *,
    shim: Path | None,
) -> subprocess.Popen[bytes]:
    """Start the kernel with ``init`` as PID 1, its console going to ``console_log``, and
    ``shim`` (``xstate_shim``) preloaded into the kernel process.

    UML forks helpers that outlive a killed main process, and it makes itself a process group
    leader if it is not one; so it is started as the leader of a new session (no wrapper in
    between) for ``kill_group`` to get them all.
    """
    if any(c.isspace() for c in str(init)):
        raise ValueError(f"init path has white space (kernel command line): {init}")
    env = {k: v for k, v in os.environ.items() if k not in ("TMP", "TEMP")}
    env["TMPDIR"] = memory_dir(workdir)
    if shim is not None:
        env["LD_PRELOAD"] = " ".join(filter(None, (str(shim), env.get("LD_PRELOAD"))))
    with console_log.open("wb") as log:
        return subprocess.Popen(
            kernel_command_line(kernel, init),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=env,
            start_new_session=True,
        )


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill a kernel's whole process group (no-op once it is gone)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def read_console(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError:
        return ""
    return raw.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")


# --- the check ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    """``ok``: use it. ``cannot-run``: a known limit of this UML build on this host (the
    XSAVE size); skip its tests with ``reason``. ``broken``: anything else (a panic before init
    for another reason, modules or AF_ALG failing): its tests run and fail, never skip."""

    kernel: UmlKernel
    status: Status
    reason: str
    release: str | None  # its ``uname -r``, else the module tree's (it never got that far)
    console_log: Path
    duration: float

    @property
    def usable(self) -> bool:
        """Whether tests run on it (a broken kernel's tests run, and fail visibly)."""
        return self.status != "cannot-run"


def check_init(helper: Path, python: str) -> str:
    """PID 1 of the check: the marker first, then modules and a ``ctr(aes)`` bind, power off."""
    q = shlex.quote
    return f"""#!/bin/sh
echo "{STARTED}"
PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "{RELEASE}$(uname -r)"
{q(str(helper))} -a {" ".join(CHECK_MODULES)} && echo "{MODULES_OK}"
{q(python)} -c {q(BIND_CTR_AES)} && echo "{AF_ALG_OK}"
sync
echo o >/proc/sysrq-trigger
sleep 60  # power-off is asynchronous; PID 1 must not exit first (that panics)
"""


def check(
    kernel: UmlKernel,
    workdir: Path,
    *,
    timeout: float = CHECK_TIMEOUT,
    python: str = sys.executable,
) -> CheckResult:
    """Boot ``kernel`` once with the trivial init and classify what happened."""
    workdir.mkdir(parents=True, exist_ok=True)
    console_log = workdir / "console.log"
    started = time.monotonic()
    timed_out = False
    try:
        init = workdir / "init"
        init.write_text(check_init(prepare_modules(kernel, workdir), python))
        init.chmod(0o755)
        shim = xstate_shim(workdir)
        proc = spawn(kernel, init, workdir, console_log, shim=shim)
    except (OSError, ValueError) as exc:
        return CheckResult(
            kernel, "broken", f"could not start {kernel.binary}: {exc}", None, console_log, 0.0
        )
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        kill_group(proc)
    return classify(
        kernel,
        read_console(console_log),
        console_log,
        time.monotonic() - started,
        timed_out=timed_out,
        timeout=timeout,
        shimmed=shim is not None,
    )


def classify(
    kernel: UmlKernel,
    console: str,
    console_log: Path,
    duration: float,
    *,
    timed_out: bool,
    timeout: float,
    shimmed: bool = True,
) -> CheckResult:
    lines = console.splitlines()
    printed = (line[len(RELEASE) :].strip() for line in lines if line.startswith(RELEASE))
    release: str | None = next(printed, None) or next(reversed(kernel.releases()), None)

    def result(status: Status, reason: str) -> CheckResult:
        return CheckResult(kernel, status, reason, release, console_log, duration)

    if STARTED not in lines:
        if FP_REGS in console:
            return result("cannot-run", CPU_REASON + (SHIM_FAILED if shimmed else NO_SHIM))
        # Anything else is not known to be the host's limit: a real failure, not a skip.
        if timed_out:
            return result("broken", f"did not reach init within {timeout:.0f} s")
        last = next((line.strip() for line in reversed(lines) if line.strip()), "no output")
        return result("broken", f"died before reaching init: {last}")
    if timed_out and AF_ALG_OK not in lines:
        return result("broken", f"init started but the check hung for {timeout:.0f} s")
    if MODULES_OK not in lines:
        return result("broken", f"modprobe {' '.join(CHECK_MODULES)} failed inside the kernel")
    if AF_ALG_OK not in lines:
        return result("broken", "AF_ALG cannot bind skcipher ctr(aes) inside the kernel")
    return result("ok", "")


def check_all(
    kernels: Sequence[UmlKernel],
    workdir: Path,
    *,
    timeout: float = CHECK_TIMEOUT,
) -> list[CheckResult]:
    """Check each kernel (in parallel: each boot mostly waits), results in input order."""
    if not kernels:
        return []
    with ThreadPoolExecutor(max_workers=len(kernels)) as pool:
        return list(
            pool.map(
                lambda k: check(k, workdir / f"check-{k.label}-{k.name}", timeout=timeout), kernels
            )
        )


def main(argv: Sequence[str]) -> int:
    """``bootcheck.py ROOT...``: one line per kernel tree; exit 0 if all are ok, 3 if any
    only cannot run on this host (and none is broken), 1 if any is broken or not a tree."""
    if not argv:
        print("usage: bootcheck.py ROOT...  (ROOT holds usr/bin/linux.uml)", file=sys.stderr)
        return 2
    kernels: list[UmlKernel] = []
    for root in argv:
        kernel = kernel_at(Path(root), Path(root).name or "distro")
        if kernel is None:
            print(f"{root}\tbroken\t-\tnot a kernel tree (usr/bin/linux.uml + modules)")
            return 1
        kernels.append(kernel)
    with tempfile.TemporaryDirectory(prefix="kstream-bootcheck-", dir="/var/tmp") as tmp:
        results = check_all(kernels, Path(tmp))
        for root, res in zip(argv, results, strict=True):
            reason = res.reason or "boots and binds ctr(aes)"
            print(f"{root}\t{res.status}\t{res.release or '-'}\t{reason}")
            if res.status == "broken":
                print("\n".join(read_console(res.console_log).splitlines()[-20:]), file=sys.stderr)
    if any(r.status == "broken" for r in results):
        return 1
    return 3 if any(r.status == "cannot-run" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
