"""Find User Mode Linux kernels, boot them with a generated init script, collect the results.

This module knows nothing about pytest items. A boot runs one command (the inner pytest) as part
of PID 1's script inside the kernel, waits for the kernel to power off or for the timeout, and
returns the console log and the report file the command wrote on the host filesystem.

Layout of a kernel (the distribution's is rooted at /, the cached ones at
``$KSTREAM_UML_DIR/<label>/`` as unpacked by ``.ci/install-uml.sh``):
``<root>/usr/bin/linux.uml`` and ``<root>/usr/lib/uml/modules/<release>/modules.dep``.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .bootcheck import (
    UmlKernel,
    kernel_at,
    kill_group,
    prepare_modules,
    read_console,
    spawn,
    xstate_shim,
)
from .report import InnerReport

ENV_CACHE_DIR = "KSTREAM_UML_DIR"
ENV_KERNELS = "KSTREAM_UML_KERNELS"
ENV_TIMEOUT = "KSTREAM_UML_TIMEOUT"
ENV_FORCE = "KSTREAM_UML_FORCE"
ENV_JOBS = "KSTREAM_UML_JOBS"
ENV_IN_UML = "KSTREAM_IN_UML"
ENV_KERNEL = "KSTREAM_UML_KERNEL"
ENV_REPORT = "KSTREAM_UML_REPORT"
#: Set by .ci/run after installing UML: fail unless a kernel of at least this version runs.
ENV_REQUIRE = "KSTREAM_UML_REQUIRE"

DEFAULT_CACHE_DIR = Path("/var/cache/kstream-uml")
DEFAULT_TIMEOUT = 600.0
#: Loaded before the tests, in modules.dep order (7.2 needs crypto_skcipher before ctr).
#: Anything else (xts, sha512, ...) loads on demand through the modprobe helper.
MODULES = ("af_alg", "algif_skcipher", "algif_hash", "ctr", "hmac")
OPTIONAL_MODULES = ("crypto_user",)
#: Host variables that reach the inner pytest (by exact name or by prefix ending in "_").
PASSED_ENV = (
    "KSTREAM_",
    "HYPOTHESIS_",
    "LC_",
    "LANG",
    "LANGUAGE",
    "TZ",
    "CI",
    "VIRTUAL_ENV",
    "PYTHONHASHSEED",
    "PYTHONWARNINGS",
    "PYTHONDEVMODE",
    "PYTHONFAULTHANDLER",
)
#: Line the init script prints so the release is known even if Python never starts.
RELEASE_MARKER = "kstream-uml: uname -r = "
EXIT_MARKER = "kstream-uml: inner command exit status "
NO_KERNEL_HINT = (
    "no AF_ALG on this host and no User Mode Linux kernel found; run .ci/install-uml.sh"
)


def cache_dir(env: Mapping[str, str] = os.environ) -> Path:
    return Path(env.get(ENV_CACHE_DIR) or DEFAULT_CACHE_DIR)


def discover_kernels(
    env: Mapping[str, str] = os.environ, distro_root: Path = Path("/")
) -> list[UmlKernel]:
    """The distribution's kernel plus each one in the cache dir, one per major.minor.

    The distribution's wins a tie (on Debian 13 it is the same 6.12 as trixie's); the result
    is sorted by version and filtered by ``KSTREAM_UML_KERNELS``.
    """
    found = [kernel_at(distro_root, "distro")]
    cache = cache_dir(env)
    if cache.is_dir():
        found += [
            kernel_at(child, child.name)
            for child in sorted(cache.iterdir())
            if not child.name.startswith(".")
        ]
    kernels: dict[str, UmlKernel] = {}
    for kernel in found:
        if kernel is not None:
            kernels.setdefault(kernel.name, kernel)
    ordered = sorted(kernels.values(), key=lambda k: k.version)
    return select_kernels(ordered, env.get(ENV_KERNELS))


def select_kernels(kernels: Sequence[UmlKernel], spec: str | None) -> list[UmlKernel]:
    """Apply ``KSTREAM_UML_KERNELS``: unset/""/"all" keeps all, "none" none, else a list of
    names ("6.12"), ids ("uml-6.12") or cache labels ("deb13-6.12"), comma/space separated."""
    tokens = (spec or "").replace(",", " ").split()
    if not tokens or tokens == ["all"]:
        return list(kernels)
    return [k for k in kernels if any(k.matches(t) for t in tokens)]


def boot_timeout(env: Mapping[str, str] = os.environ) -> float:
    return float(env.get(ENV_TIMEOUT) or DEFAULT_TIMEOUT)


def inner_environment(
    kernel: UmlKernel, workdir: Path, report: Path, host_env: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """Environment of the inner pytest. PID 1 starts with next to nothing, so all is explicit.

    PYTHONPATH is the host's whole ``sys.path``: the same interpreter then resolves imports
    exactly as on the host (venv, editable installs, rootdir entries), whoever started it.
    Caches and temp files go to ``workdir`` rather than into the repository.
    """
    env = {
        k: v
        for k, v in host_env.items()
        if k in PASSED_ENV or any(p.endswith("_") and k.startswith(p) for p in PASSED_ENV)
    }
    path = host_env.get("PATH", "").split(os.pathsep)
    path = [str(Path(sys.executable).parent), *path]
    path += [
        d
        for d in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
        if d not in path
    ]
    env.update(
        PATH=os.pathsep.join(dict.fromkeys(p for p in path if p)),
        HOME=host_env.get("HOME") or "/root",
        LANG=host_env.get("LANG") or "C.UTF-8",
        TMPDIR=str(workdir / "tmp"),
        PYTHONPATH=os.pathsep.join(dict.fromkeys(p or os.getcwd() for p in sys.path)),
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONUNBUFFERED="1",
        HYPOTHESIS_STORAGE_DIRECTORY=str(workdir / "hypothesis"),
        **{ENV_IN_UML: "1", ENV_KERNEL: kernel.name, ENV_REPORT: str(report)},
    )
    for var in (ENV_CACHE_DIR, ENV_KERNELS, ENV_TIMEOUT, ENV_FORCE, ENV_JOBS, ENV_REQUIRE):
        env.pop(var, None)
    return env


def inner_deadline(timeout: float) -> int:
    """Seconds the inner command may run: the boot's timeout less a margin for boot and
    power-off, so that a hung test ends with the kernel powering off by itself."""
    return max(1, int(timeout - min(30.0, timeout / 4)))


def init_script(
    *,
    kernel: UmlKernel,
    workdir: Path,
    cwd: Path,
    argv: Sequence[str],
    env: Mapping[str, str],
    timeout: float = DEFAULT_TIMEOUT,
) -> str:
    """PID 1 inside UML: mount, load modules, run ``argv`` in ``cwd``, sync, power off.

    The kernel's own module requests (``crypto-xts`` etc.) go through a helper that points
    modprobe at the kernel's module tree, since the host has no /lib/modules/<its release>.
    /tmp is left alone: a tmpfs there would hide the host's /tmp, where the report may be.
    """
    q = shlex.quote
    helper = workdir / "modprobe"
    exports = "\n".join(f"export {k}={q(v)}" for k, v in sorted(env.items()))
    command = " ".join(q(a) for a in argv)
    return f"""#!/bin/sh
# Generated by tests/uml/harness.py for {kernel.id} ({kernel.binary}).
{exports}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
grep -q ' /dev devtmpfs ' /proc/mounts || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/shm /dev/pts && mount -t tmpfs -o mode=1777 shm /dev/shm
mount -t devpts devpts /dev/pts 2>/dev/null
ip link set lo up 2>/dev/null || true
mkdir -p {q(str(workdir / "tmp"))}
echo "{RELEASE_MARKER}$(uname -r)"
echo {q(str(helper))} >/proc/sys/kernel/modprobe
{q(str(helper))} -a {" ".join(MODULES)} || echo "kstream-uml: modprobe failed"
for m in {" ".join(OPTIONAL_MODULES)}; do {q(str(helper))} -q "$m" || true; done
cd {q(str(cwd))} && timeout -s KILL {inner_deadline(timeout)} {command}
echo "{EXIT_MARKER}$?"
sync
echo o >/proc/sysrq-trigger
sleep 60  # power-off is asynchronous; PID 1 must not exit first (that panics)
"""


@dataclass
class BootResult:
    """What one boot left behind. ``report.finished`` is the only sign of a complete run."""

    kernel: UmlKernel
    workdir: Path
    console_log: Path
    report: InnerReport
    returncode: int | None
    timed_out: bool
    duration: float
    timeout: float
    start_error: str | None = None
    stopped: bool = False

    @property
    def release(self) -> str | None:
        """The kernel's ``uname -r``, as the init script printed it."""
        return self.report.release or self._console_value(RELEASE_MARKER)

    @property
    def inner_status(self) -> int | None:
        """Exit status of the inner command, if it got as far as ending."""
        value = self._console_value(EXIT_MARKER)
        return int(value) if value and value.isdigit() else None

    def _console_value(self, marker: str) -> str | None:
        for line in self.console_text().splitlines():
            if line.startswith(marker):
                return line[len(marker) :].strip()
        return None

    @property
    def problem(self) -> str | None:
        """Why this boot's results cannot be trusted, or None if the inner run completed."""
        if self.start_error:
            return f"could not start {self.kernel.binary}: {self.start_error}"
        if self.report.finished:
            return None
        if self.stopped:
            return "stopped unfinished because the pytest session ended first"
        if self.timed_out:
            return (
                f"timed out after {self.timeout:.0f} s ({ENV_TIMEOUT}) before the inner "
                "pytest finished; the kernel was killed"
            )
        status = self.inner_status
        if status == 128 + signal.SIGKILL:
            return (
                f"the inner pytest was killed after {inner_deadline(self.timeout)} s "
                f"({ENV_TIMEOUT}={self.timeout:.0f} less a margin for boot and power-off); "
                "the console log shows the test it was running"
            )
        if status is not None:
            return f"the inner pytest exited (status {status}) without completing its report"
        return (
            f"the kernel exited (status {self.returncode}) before the inner pytest "
            "finished: crash, panic or out of memory?"
        )

    def console_text(self) -> str:
        return read_console(self.console_log)

    def console_tail(self, lines: int = 60) -> str:
        return "\n".join(self.console_text().splitlines()[-lines:])


class UmlBoot:
    """One boot of one kernel, started in the background and waited for on demand."""

    def __init__(
        self,
        kernel: UmlKernel,
        workdir: Path,
        *,
        argv: Sequence[str],
        cwd: Path,
        env: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.kernel = kernel
        self.workdir = workdir
        self.argv = list(argv)
        self.cwd = cwd
        self.timeout = timeout
        self.report_path = workdir / "report.jsonl"
        self.console_log = workdir / "console.log"
        self.env = (
            dict(env) if env is not None else inner_environment(kernel, workdir, self.report_path)
        )
        self._proc: subprocess.Popen[bytes] | None = None
        self._started = 0.0
        self._started_wall = 0.0
        self._start_error: str | None = None
        self._stopped = False
        self._result: BootResult | None = None

    @property
    def started(self) -> bool:
        return self._started > 0

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def prepare(self) -> Path:
        """Write the init script and the modprobe helper with its module tree; return the init."""
        prepare_modules(self.kernel, self.workdir)
        init = self.workdir / "init"
        init.write_text(
            init_script(
                kernel=self.kernel,
                workdir=self.workdir,
                cwd=self.cwd,
                argv=self.argv,
                env=self.env,
                timeout=self.timeout,
            )
        )
        init.chmod(0o755)
        self.report_path.unlink(missing_ok=True)
        return init

    def start(self) -> None:
        if self.started:
            return
        self._started = time.monotonic()
        self._started_wall = time.time()
        try:
            self._proc = self.launch()
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            self._start_error = str(exc)

    def launch(self) -> subprocess.Popen[bytes]:
        """Prepare the boot and start its kernel (the QEMU boot starts QEMU instead)."""
        return spawn(
            self.kernel,
            self.prepare(),
            self.workdir,
            self.console_log,
            shim=xstate_shim(self.workdir),
        )

    def wait(self) -> BootResult:
        """Block until the kernel is off or its time is up; idempotent."""
        if self._result is not None:
            return self._result
        self.start()
        timed_out = False
        if self._proc is not None:
            remaining = self._started + self.timeout - time.monotonic()
            try:
                self._proc.wait(timeout=max(remaining, 0.01))
            except subprocess.TimeoutExpired:
                timed_out = True
                self.kill()
        self._result = BootResult(
            kernel=self.kernel,
            workdir=self.workdir,
            console_log=self.console_log,
            report=InnerReport.read(self.report_path),
            returncode=self._proc.returncode if self._proc else None,
            timed_out=timed_out,
            duration=time.monotonic() - self._started if timed_out else self._duration(),
            timeout=self.timeout,
            start_error=self._start_error,
            stopped=self._stopped,
        )
        return self._result

    def _duration(self) -> float:
        """Run time of the kernel. It may have ended long before ``wait`` was called: the
        console log's last write is when it powered off."""
        try:
            return max(0.0, self.console_log.stat().st_mtime - self._started_wall)
        except OSError:
            return time.monotonic() - self._started

    def stop(self) -> None:
        """Kill the kernel if it still runs; its result then says it was stopped."""
        if self.running:
            self._stopped = True
            self.kill()

    def kill(self) -> None:
        """Kill the kernel's whole process group (no-op once it is gone)."""
        if self._proc is not None:
            kill_group(self._proc)


def main() -> None:
    """``cd tests && python3 -m uml.harness``: list the kernels the tests would use, with the
    boot check's verdict for this host."""
    import tempfile

    from .bootcheck import check_all

    kernels = discover_kernels()
    print(f"cache dir: {cache_dir()}")
    with tempfile.TemporaryDirectory(prefix="kstream-bootcheck-", dir="/var/tmp") as tmp:
        for res in check_all(kernels, Path(tmp)):
            kernel = res.kernel
            print(
                f"{kernel.id:10} {kernel.label:12} {kernel.binary} {res.release} "
                f"{res.status} {res.reason}"
            )
    if not kernels:
        print(NO_KERNEL_HINT)


if __name__ == "__main__":
    main()
