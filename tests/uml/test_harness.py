"""Host-side tests of the UML harness itself; none needs AF_ALG or a real UML kernel.

The end-to-end ones run pytest in a subprocess on a sandbox (a copy of tests/conftest.py and
tests/uml/ next to a small kernel-marked test file) with fake kernels: shell scripts standing in
for ``linux.uml`` that crash, hang, or write a report the way the inner pytest would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from . import bootcheck, harness, plugin
from .bootcheck import UmlKernel
from .harness import BootResult
from .report import InnerReport, Verdict

TESTS = Path(__file__).resolve().parent.parent
K61 = UmlKernel("6.1", "distro", Path("/usr/bin/linux.uml"), Path("/usr/lib/uml/modules"))


def shim_note() -> str:
    """What a cannot-run reason ends with here: whether the shim could be built."""
    return bootcheck.SHIM_FAILED if bootcheck.c_compiler() else bootcheck.NO_SHIM


def make_kernel_tree(root: Path, release: str, script: str = "#!/bin/sh\nexit 0\n") -> Path:
    """A directory laid out like an unpacked user-mode-linux package, with a fake binary."""
    binary = root / "usr/bin/linux.uml"
    binary.parent.mkdir(parents=True)
    binary.write_text(script)
    binary.chmod(0o755)
    modules = root / "usr/lib/uml/modules" / release
    modules.mkdir(parents=True)
    (modules / "modules.dep").write_text("")
    return root


# --- naming and discovery -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("test_x", "test_x[uml-6.1]"),
        ("test_x[16]", "test_x[16-uml-6.1]"),
        ("test_x[a-b]", "test_x[a-b-uml-6.1]"),
    ],
)
def test_host_name(name: str, expected: str) -> None:
    assert plugin.host_name(name, K61) == expected


@pytest.mark.parametrize(
    ("nodeid", "expected"),
    [
        ("tests/k/test_a.py::test_x", "tests/k/test_a.py::test_x"),
        ("tests/k/test_a.py::test_x[16]", "tests/k/test_a.py::test_x"),
        ("tests/k/test_a.py::TestC::test_x[a::b[c]]", "tests/k/test_a.py::TestC::test_x"),
    ],
)
def test_base_nodeid(nodeid: str, expected: str) -> None:
    assert plugin.base_nodeid(nodeid) == expected


@pytest.mark.parametrize(
    ("nodeid", "expected"),
    [
        ("t.py::test_x[uml-6.1]", "t.py::test_x"),
        ("t.py::test_x[16-uml-6.1]", "t.py::test_x[16]"),
        ("t.py::test_x[uml-6.1-a-b]", "t.py::test_x[a-b]"),  # a later hook parametrized further
        ("t.py::test_x[a-uml-6.1-b]", "t.py::test_x[a-b]"),
        ("t.py::test_x[uml-6.12]", "t.py::test_x[uml-6.12]"),  # another kernel: not found
    ],
)
def test_inner_nodeid(nodeid: str, expected: str) -> None:
    assert plugin.inner_nodeid(nodeid, K61) == expected


def test_discovery_dedupes_sorts_and_filters(tmp_path: Path) -> None:
    distro = make_kernel_tree(tmp_path / "distro", "6.12.113")
    cache = tmp_path / "cache"
    make_kernel_tree(cache / "deb13-6.12", "6.12.113")  # same as the distro's: dropped
    make_kernel_tree(cache / "sid-7.2", "7.2.7")
    make_kernel_tree(cache / "old-6.1", "6.1.176")
    make_kernel_tree(cache / ".new-sid-7.3", "7.3.0")  # unfinished install: ignored
    (cache / "junk").mkdir()  # not a kernel tree: ignored

    env = {harness.ENV_CACHE_DIR: str(cache)}
    kernels = harness.discover_kernels(env, distro_root=distro)
    assert [(k.id, k.label) for k in kernels] == [
        ("uml-6.1", "old-6.1"),
        ("uml-6.12", "distro"),
        ("uml-7.2", "sid-7.2"),
    ]
    assert kernels[2].releases() == ["7.2.7"]

    def names(spec: str) -> list[str]:
        found = harness.discover_kernels({**env, harness.ENV_KERNELS: spec}, distro_root=distro)
        return [k.name for k in found]

    assert names("uml-7.2, 6.1") == ["6.1", "7.2"]
    assert names("deb13-6.12") == []  # the label of a dropped duplicate names nothing
    assert names("distro") == ["6.12"]
    assert names("none") == []
    assert names("all") == ["6.1", "6.12", "7.2"]


def test_inner_environment(tmp_path: Path) -> None:
    host = {
        "PATH": "/opt/venv/bin:/usr/bin",
        "HOME": "/home/u",
        "KSTREAM_BENCH": "1",
        "KSTREAM_UML_TIMEOUT": "5",
        "SECRET_TOKEN": "x",
        "LC_ALL": "C.UTF-8",
    }
    env = harness.inner_environment(K61, tmp_path, tmp_path / "r.jsonl", host)
    assert env["KSTREAM_IN_UML"] == "1" and env["KSTREAM_UML_KERNEL"] == "6.1"
    assert env["KSTREAM_UML_REPORT"] == str(tmp_path / "r.jsonl")
    assert env["PATH"].split(":")[:3] == [
        str(Path(sys.executable).parent),
        "/opt/venv/bin",
        "/usr/bin",
    ]
    assert env["HOME"] == "/home/u" and env["LC_ALL"] == "C.UTF-8"
    assert env["KSTREAM_BENCH"] == "1"
    assert "KSTREAM_UML_TIMEOUT" not in env and "SECRET_TOKEN" not in env
    assert env["PYTHONPATH"].split(":")[0] == (sys.path[0] or os.getcwd())
    assert env["HYPOTHESIS_STORAGE_DIRECTORY"].startswith(str(tmp_path))


def test_memory_dir_needs_room_for_all_of_the_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    free = {"/small": 64 << 20, "/dev/shm": 64 << 20, "/tmp": 8 << 30}

    def statvfs(path: str) -> os.statvfs_result:
        return os.statvfs_result((4096, 1, 0, 0, free[path], 0, 0, 0, 0, 255))

    monkeypatch.setattr(os, "statvfs", statvfs)
    assert bootcheck.memory_dir(tmp_path, {"TMPDIR": "/small"}) == "/tmp"
    free["/tmp"] = 1 << 20
    assert bootcheck.memory_dir(tmp_path, {}) == str(tmp_path)
    free["/dev/shm"] = 1 << 30
    assert bootcheck.memory_dir(tmp_path, {"TMPDIR": "/small"}) == "/dev/shm"


# --- report parsing and verdicts ------------------------------------------------------------------


def boot_result(tmp_path: Path, lines: list[str], **kw: object) -> BootResult:
    console = tmp_path / "console.log"
    console.write_text("booting\r\nkstream-uml: uname -r = 6.1.176\r\nlast words\r\n")
    fields: dict[str, Any] = dict(
        kernel=K61,
        workdir=tmp_path,
        console_log=console,
        report=InnerReport.parse(lines),
        returncode=0,
        timed_out=False,
        duration=1.0,
        timeout=600.0,
    )
    fields.update(kw)
    return BootResult(**fields)


def event(**kw: object) -> str:
    return json.dumps(kw)


@pytest.mark.parametrize(
    ("console", "timed_out", "status", "reason"),
    [
        (
            "kstream-uml-check: init started\nkstream-uml-check: release 6.1.9\n"
            "kstream-uml-check: modprobe ok\nkstream-uml-check: af_alg ok\n",
            False,
            "ok",
            "",
        ),
        (
            "Run /x/init as init process\nuserspace - ptrace set fp regs failed, errno = 14\n"
            "Kernel panic - not syncing: Attempted to kill init!\n",
            False,
            "cannot-run",
            bootcheck.CPU_REASON + bootcheck.SHIM_FAILED,
        ),
        (
            "Kernel panic - not syncing: VFS: Unable to mount root fs\n",
            False,
            "broken",
            "died before reaching init: Kernel panic - not syncing: VFS: Unable to mount root fs",
        ),
        ("Linux version 6.1\n", True, "broken", "did not reach init within 7 s"),
        (
            "kstream-uml-check: init started\nmodprobe: FATAL: Module ctr not found\n",
            False,
            "broken",
            "modprobe af_alg algif_skcipher ctr failed inside the kernel",
        ),
        (
            "kstream-uml-check: init started\nkstream-uml-check: modprobe ok\n",
            False,
            "broken",
            "AF_ALG cannot bind skcipher ctr(aes) inside the kernel",
        ),
        (
            "kstream-uml-check: init started\n",
            True,
            "broken",
            "init started but the check hung for 7 s",
        ),
        # a panic with the fp-regs text *after* init started is a real crash, not the host's limit
        (
            "kstream-uml-check: init started\nptrace set fp regs failed, errno = 14\n",
            False,
            "broken",
            "modprobe af_alg algif_skcipher ctr failed inside the kernel",
        ),
    ],
)
def test_boot_check_classifies_the_console(
    tmp_path: Path,
    console: str,
    timed_out: bool,
    status: str,
    reason: str,
) -> None:
    res = bootcheck.classify(
        K61, console, tmp_path / "console.log", 1.0, timed_out=timed_out, timeout=7
    )
    assert (res.status, res.reason) == (status, reason)
    assert res.usable is (status != "cannot-run")


def test_boot_check_says_when_the_xstate_shim_could_not_be_built(tmp_path: Path) -> None:
    console = "userspace - ptrace set fp regs failed, errno = 14\n"
    res = bootcheck.classify(
        K61, console, tmp_path / "console.log", 1.0, timed_out=False, timeout=7, shimmed=False
    )
    assert res.status == "cannot-run"
    assert res.reason == (
        "cannot run on this host CPU: ptrace set fp regs failed (host XSAVE state larger than "
        "this UML build supports) and xstate_shim.c could not be built (no C compiler?)"
    )


# Traces a stopped child and restores its XSAVE state from a buffer holding only the legacy
# area and the header (576 bytes), as old UML builds do with their fixed-size buffer.
XSTATE_PROBE = r"""
import ctypes, json, os, signal
PTRACE_TRACEME, PTRACE_KILL, PTRACE_GETREGSET, PTRACE_SETREGSET = 0, 8, 0x4204, 0x4205
NT_X86_XSTATE, SHORT, XMM0 = 0x202, 576, slice(160, 176)
class IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.restype = ctypes.c_long
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
def regset(request, pid, buf, size):
    iov = IoVec(ctypes.addressof(buf), size)
    rc = libc.ptrace(request, pid, NT_X86_XSTATE, ctypes.byref(iov))
    return (0 if rc == 0 else ctypes.get_errno()), iov.len
pid = os.fork()
if pid == 0:
    libc.ptrace(PTRACE_TRACEME, 0, None, None)
    os.kill(os.getpid(), signal.SIGSTOP)
    os._exit(0)
os.waitpid(pid, os.WUNTRACED)
before = ctypes.create_string_buffer(1 << 16)
err, full = regset(PTRACE_GETREGSET, pid, before, len(before))
out = {"get": err, "full": full}
if err == 0:
    short = ctypes.create_string_buffer(before.raw[:SHORT], SHORT)
    ctypes.memmove(ctypes.addressof(short) + XMM0.start, b"kstream-xmm0-set", 16)
    out["set"] = regset(PTRACE_SETREGSET, pid, short, SHORT)[0]
    after = ctypes.create_string_buffer(1 << 16)
    regset(PTRACE_GETREGSET, pid, after, len(after))
    out["xmm0"] = after.raw[XMM0].decode("latin-1")
    out["tail_kept"] = after.raw[SHORT:full] == before.raw[SHORT:full]
libc.ptrace(PTRACE_KILL, pid, None, None)
os.waitpid(pid, 0)
print(json.dumps(out))
"""


def test_xstate_shim_completes_a_short_setregset(tmp_path: Path) -> None:
    """Without the shim the host refuses a short NT_X86_XSTATE SETREGSET (EFAULT, what kills
    old UML builds on AMX hosts); with it the call succeeds, sets what the short buffer holds
    and keeps the rest of the traced process's state."""
    shim = bootcheck.xstate_shim(tmp_path)
    if shim is None:
        pytest.skip("no C compiler to build tests/uml/xstate_shim.c")

    def probe(preload: dict[str, str]) -> dict[str, Any]:
        proc = subprocess.run(
            [sys.executable, "-c", XSTATE_PROBE],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, **preload},
        )
        assert proc.returncode == 0, proc.stderr
        result: dict[str, Any] = json.loads(proc.stdout)
        return result

    plain = probe({})
    if plain["get"] != 0:
        pytest.skip(f"this host cannot read XSAVE state by ptrace (errno {plain['get']})")
    assert plain["full"] > 576 and plain["set"] == 14  # EFAULT
    shimmed = probe({"LD_PRELOAD": str(shim)})
    assert shimmed == {
        "get": 0,
        "full": plain["full"],
        "set": 0,
        "xmm0": "kstream-xmm0-set",
        "tail_kept": True,
    }


def test_boot_check_script_runs_the_real_check_and_says_why(tmp_path: Path) -> None:
    """The install script's entry point, on a fake kernel that has the AMX host's problem."""
    if shutil.which("modprobe", path="/usr/sbin:/sbin:/usr/bin:/bin") is None:
        pytest.skip("the boot check needs kmod's modprobe (.ci/install-uml.sh)")
    make_kernel_tree(tmp_path / "amx", "6.1.176", FAKE_FP_REGS)
    make_kernel_tree(tmp_path / "good", "7.2.7", PASS_CHECK)
    script = TESTS / "uml" / "bootcheck.py"
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "amx"), str(tmp_path / "good")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [
        f"{tmp_path / 'amx'}\tcannot-run\t6.1.176\t{bootcheck.CPU_REASON}{shim_note()}",
        f"{tmp_path / 'good'}\tok\t7.2.7\tboots and binds ctr(aes)",
    ]


def test_truncated_report_without_finish_fails_every_test(tmp_path: Path) -> None:
    lines = [
        event(event="start", release="6.1.176"),
        event(event="test", nodeid="t.py::test_a", when="setup", outcome="passed"),
        '{"event": "test", "nodeid": "t.py::te',
    ]  # the kernel died mid-write
    result = boot_result(tmp_path, lines, returncode=134)
    assert not result.report.finished
    verdict = plugin.verdict_for(result, "t.py::test_a")
    assert verdict.status == "failed"
    assert "exited (status 134) before the inner pytest finished" in verdict.message
    assert "last words" in verdict.message and "\r" not in verdict.message


def test_release_falls_back_to_the_console(tmp_path: Path) -> None:
    assert boot_result(tmp_path, []).release == "6.1.176"
    lines = [event(event="start", release="6.1.177")]
    assert boot_result(tmp_path, lines).release == "6.1.177"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (137, "the inner pytest was killed after 570 s (KSTREAM_UML_TIMEOUT=600 less a margin"),
        (1, "the inner pytest exited (status 1) without completing its report"),
    ],
)
def test_inner_command_status_explains_a_missing_finish(
    tmp_path: Path, status: int, expected: str
) -> None:
    result = boot_result(tmp_path, [])
    result.console_log.write_text(f"{harness.EXIT_MARKER}{status}\nsysrq: Power Off\n")
    assert result.problem is not None and result.problem.startswith(expected)


def test_init_script_bounds_the_inner_command(tmp_path: Path) -> None:
    script = harness.init_script(
        kernel=K61,
        workdir=tmp_path,
        cwd=Path("/w d"),
        argv=["python3", "-m", "pytest", "a b"],
        env={"X": "1 2"},
        timeout=600,
    )
    assert "\nexport X='1 2'\n" in script
    assert "cd '/w d' && timeout -s KILL 570 python3 -m pytest 'a b'\n" in script
    assert script.index("sync\n") < script.index("echo o >/proc/sysrq-trigger")
    assert harness.inner_deadline(2) == 1 and harness.inner_deadline(60) == 45


def test_missing_test_fails_with_collection_errors(tmp_path: Path) -> None:
    lines = [
        event(event="collect_error", nodeid="t.py", longrepr="ImportError: no kstream"),
        event(event="finish", exitstatus=2),
    ]
    verdict = plugin.verdict_for(boot_result(tmp_path, lines), "t.py::test_a")
    assert verdict.status == "failed"
    assert "t.py::test_a did not run inside uml-6.1 (6.1.176, distro)" in verdict.message
    assert "exit status 2" in verdict.message and "ImportError: no kstream" in verdict.message


# --- the inner side: a real pytest run writing the report -----------------------------------------


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A project with the root conftest and the harness, but no kstream and no ini settings."""
    root = tmp_path / "project"
    (root / "uml").mkdir(parents=True)
    shutil.copy(TESTS / "conftest.py", root / "conftest.py")
    for module in (
        "__init__.py",
        "bootcheck.py",
        "harness.py",
        "report.py",
        "plugin.py",
        "qemu.py",
        "xstate_shim.c",
    ):
        shutil.copy(TESTS / "uml" / module, root / "uml" / module)
    (root / "pytest.ini").write_text("[pytest]\n")
    return root


def run_pytest(
    root: Path,
    test_source: str,
    env: dict[str, str],
    *args: str,
    target: tuple[str, ...] = ("test_k.py",),
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    (root / "test_k.py").write_text(textwrap.dedent(test_source))
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KSTREAM_", "PYTEST_"))}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-c",
            str(root / "pytest.ini"),
            "--rootdir",
            str(root),
            "--basetemp",
            str(root.parent / "basetemp"),
            "-rA",
            "-v",
            "--color=no",
            *args,
            *target,
        ],
        cwd=root,
        env={**clean, "KSTREAM_QEMU_KERNELS": "none", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


INNER_TESTS = """
    import pytest
    pytestmark = pytest.mark.kernel

    @pytest.fixture
    def broken():
        raise RuntimeError("fixture exploded")

    def test_pass():
        pass

    @pytest.mark.parametrize("n", [1, 2])
    def test_param(n):
        print("the value is", n)
        assert n == 1

    def test_skip():
        pytest.skip("not on this kernel")

    @pytest.mark.xfail(reason="known kernel bug")
    def test_xfail():
        assert False

    def test_setup_error(broken):
        pass
"""


def test_inner_report_round_trip(sandbox: Path) -> None:
    report_path = sandbox.parent / "report.jsonl"
    proc = run_pytest(
        sandbox, INNER_TESTS, {"KSTREAM_IN_UML": "1", "KSTREAM_UML_REPORT": str(report_path)}
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "kernel tests ran inside User Mode Linux" in proc.stdout
    report = InnerReport.read(report_path)
    assert report.finished and report.exitstatus == 1
    assert report.release == os.uname().release
    verdicts = {nodeid.split("::")[1]: rec.verdict() for nodeid, rec in report.tests.items()}
    assert verdicts["test_pass"].status == "passed"
    assert verdicts["test_param[1]"].status == "passed"
    assert verdicts["test_param[2]"].status == "failed"
    assert "assert 2 == 1" in verdicts["test_param[2]"].message
    assert "the value is 2" in verdicts["test_param[2]"].message  # captured output comes along
    assert verdicts["test_skip"] == Verdict("skipped", "not on this kernel")
    assert verdicts["test_xfail"] == Verdict("xfailed", "known kernel bug")
    assert verdicts["test_setup_error"].status == "failed"
    assert "[setup]" in verdicts["test_setup_error"].message
    assert "fixture exploded" in verdicts["test_setup_error"].message


# --- the host side with fake kernels --------------------------------------------------------------

# Fake kernels see the init script they were given; each of them passes the boot check (which
# it recognises by the check's marker) as a kernel that works would, unless it is FAKE_FP_REGS.
PASS_CHECK = """#!/bin/sh
for arg; do case $arg in init=*) init=${arg#init=};; esac; done
if grep -q "kstream-uml-check: init started" "$init"; then
  printf 'kstream-uml-check: %s\\n' "init started" "modprobe ok" "af_alg ok"
  exit 0
fi
"""
# What Debian's UML 6.1 and 6.12 print on an Intel host with AMX, before any init runs.
FAKE_FP_REGS = """#!/bin/sh
echo "Run /init as init process"
echo "userspace - ptrace set fp regs failed, errno = 14"
echo "Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b"
exit 134
"""
FAKE_CRASH = (
    PASS_CHECK
    + """
echo "Kernel panic - not syncing: fake crash for the harness test"
exit 134
"""
)
FAKE_HANG = (
    PASS_CHECK
    + """
sleep 300 &
echo $! >"$(dirname "$0")/child.pid"
echo "hanging on purpose"
wait
"""
)
# Writes what the inner pytest would: test_a[x] and test_f[2] pass, test_b[2] fails, test_c is
# skipped inside (its skipif must not be evaluated on the host), test_d never ran.
FAKE_REPORTER = (
    PASS_CHECK
    + """
report=$(sed -n 's/^export KSTREAM_UML_REPORT=//p' "$init")
nodeids=$(grep -o 'test_k.py::[^ ]*' "$init" | tr '\\n' ' ')
echo "kstream-uml: uname -r = 9.7.0"
echo "inner argv tail: $nodeids"
t() { printf '{"event":"test","nodeid":"test_k.py::%s","when":"%s","outcome":"%s"%s}\\n' "$@"; }
{
  echo '{"event":"start","release":"9.7.0"}'
  t 'test_a[x]' setup passed ''; t 'test_a[x]' call passed ''; t 'test_a[x]' teardown passed ''
  t 'test_b[1]' setup passed ''; t 'test_b[1]' call passed ''
  t 'test_b[1]' teardown passed ''
  t 'test_b[2]' setup passed ''
  t 'test_b[2]' call failed ',"longrepr":"assert 2 == 1 (from the fake kernel)"'
  t 'test_b[2]' teardown passed ''
  t test_c setup skipped ',"reason":"skipped inside, as it should be"'
  t 'test_f[2]' setup passed ''; t 'test_f[2]' call passed ''; t 'test_f[2]' teardown passed ''
  echo '{"event":"finish","exitstatus":1}'
} >"$report"
"""
)
HOST_TESTS = """
    import pytest

    @pytest.fixture(params=["x"])
    def fx(request):
        return request.param

    @pytest.mark.kernel
    def test_a(fx):
        raise AssertionError("a kernel test body must never run on the host")

    @pytest.mark.kernel
    @pytest.mark.parametrize("n", [1, 2])
    def test_b(n):
        raise AssertionError("never on the host")

    @pytest.mark.kernel
    @pytest.mark.skipif(True, reason="evaluated on the host: wrong")
    def test_c():
        pass

    @pytest.mark.kernel
    def test_d():
        pass

    @pytest.mark.kernel
    class TestNotRun:
        def test_e(self):
            pass

    @pytest.mark.parametrize("n", [1, pytest.param(2, marks=pytest.mark.kernel)])
    def test_f(n):
        assert n == 1, "never on the host"
"""


@pytest.mark.skipif(
    shutil.which("modprobe", path="/usr/sbin:/sbin:/usr/bin:/bin") is None,
    reason="the harness needs kmod's modprobe (.ci/install-uml.sh)",
)
def test_host_items_relay_and_broken_kernels_fail(sandbox: Path) -> None:
    cache = sandbox.parent / "cache"
    make_kernel_tree(cache / "crash-9.8", "9.8.0", FAKE_CRASH)
    make_kernel_tree(cache / "hang-9.9", "9.9.0", FAKE_HANG)
    make_kernel_tree(cache / "fake-9.7", "9.7.0", FAKE_REPORTER)
    make_kernel_tree(cache / "amx-9.6", "9.6.0", FAKE_FP_REGS)
    env = {
        "KSTREAM_UML_FORCE": "1",
        "KSTREAM_UML_DIR": str(cache),
        "KSTREAM_UML_JOBS": "3",
        "KSTREAM_UML_KERNELS": "9.6 9.7 9.8 9.9",
        "KSTREAM_UML_TIMEOUT": "2",
        "KSTREAM_UML_REQUIRE": "9.7",
    }
    proc = run_pytest(sandbox, HOST_TESTS, env, "-k", "not TestNotRun")
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr

    # relayed from the fake reporter
    assert "test_k.py::test_a[x-uml-9.7] PASSED" in out  # the kernel id comes last
    assert "test_k.py::test_b[1-uml-9.7] PASSED" in out
    assert "test_k.py::test_b[2-uml-9.7] FAILED" in out
    assert "assert 2 == 1 (from the fake kernel)" in out
    assert "test_k.py::test_c[uml-9.7] SKIPPED (skipped inside, as it should be)" in out
    assert "test_k.py::test_d[uml-9.7] FAILED" in out
    assert "test_k.py::test_d did not run inside uml-9.7 (9.7.0, fake-9.7)" in out
    assert "test_k.py::test_f[1] PASSED" in out  # not kernel-marked: runs on the host
    assert "test_k.py::test_f[2-uml-9.7] PASSED" in out  # kernel-marked by pytest.param
    assert "never on the host" not in out and "evaluated on the host" not in out
    # the inner run is asked for base nodeids only, and not for deselected tests
    console = next((sandbox.parent / "basetemp").glob("uml-9.7-boot*/console.log")).read_text()
    assert (
        "inner argv tail: test_k.py::test_a test_k.py::test_b test_k.py::test_c "
        "test_k.py::test_d test_k.py::test_f \n"
    ) in console

    # every test fails on the broken kernels, with the console tail attached
    for name in ("test_a[x", "test_b[1", "test_b[2", "test_c", "test_d", "test_f[2"):
        for kernel in ("9.8", "9.9"):
            assert f"test_k.py::{name}{'-' if '[' in name else '['}uml-{kernel}] FAILED" in out
    assert "exited (status 134) before the inner pytest finished" in out
    assert "Kernel panic - not syncing: fake crash for the harness test" in out
    assert "timed out after 2 s (KSTREAM_UML_TIMEOUT)" in out
    assert "hanging on purpose" in out
    # the kernel that cannot run on this host CPU: every test skipped with the reason
    reason = (
        "uml-9.6: cannot run on this host CPU: ptrace set fp regs failed (host XSAVE "
        "state larger than this UML build supports)" + shim_note()
    )
    for name in ("test_a[x", "test_b[1", "test_b[2", "test_c", "test_d", "test_f[2"):
        assert f"test_k.py::{name}{'-' if '[' in name else '['}uml-9.6] SKIPPED" in out
    for count, line in ((1, 8), (2, 12), (1, 17), (1, 22), (1, 31)):  # -rA: at each test
        assert f"SKIPPED [{count}] test_k.py:{line}: {reason}\n" in out
    assert "14 failed, 4 passed, 7 skipped, 4 deselected" in out
    assert (
        "kstream kernel tests: ran on uml-9.7, uml-9.8, uml-9.9; skipped uml-9.6 (cannot "
        "run on this host CPU)"
    ) in out
    assert f"uml-9.6 (9.6.0, amx-9.6): SKIPPED, {reason.removeprefix('uml-9.6: ')}" in out
    assert not list((sandbox.parent / "basetemp").glob("uml-9.6-boot*"))  # never booted for tests

    # the summary names each kernel; the hung kernel's process group is gone
    assert "uml-9.7 (9.7.0, fake-9.7): 5 tests" in out
    assert "uml-9.9 (?, hang-9.9): BROKEN: timed out" in out
    child = int((cache / "hang-9.9/usr/bin/child.pid").read_text())
    assert process_gone(child)

    # a host id from the output selects just that test again
    proc = run_pytest(sandbox, HOST_TESTS, env, "test_k.py::test_b[2-uml-9.7]", target=())
    assert "test_k.py::test_b[2-uml-9.7] FAILED" in proc.stdout
    assert "1 failed in" in proc.stdout, proc.stdout


def test_required_kernel_that_cannot_run_is_an_error(sandbox: Path) -> None:
    """CI installs UML and asks for >= 6.2: if none runs here, pytest fails, never skips."""
    cache = sandbox.parent / "cache"
    make_kernel_tree(cache / "amx-9.6", "9.6.0", FAKE_FP_REGS)
    make_kernel_tree(cache / "old-6.1", "6.1.0", FAKE_REPORTER)
    env = {
        "KSTREAM_UML_FORCE": "1",
        "KSTREAM_UML_DIR": str(cache),
        "KSTREAM_UML_KERNELS": "9.6 6.1",
        "KSTREAM_UML_REQUIRE": "6.2",
    }
    proc = run_pytest(sandbox, HOST_TESTS, env)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert (
        "KSTREAM_UML_REQUIRE=6.2: no User Mode Linux kernel >= 6.2 runs on this host" in proc.stderr
    )
    assert "uml-9.6 (amx-9.6): cannot-run, cannot run on this host CPU" in proc.stderr
    # with no UML at all, the requirement fails the same way
    env["KSTREAM_UML_KERNELS"] = "none"
    proc = run_pytest(sandbox, HOST_TESTS, env)
    assert proc.returncode == 4 and "KSTREAM_UML_REQUIRE=6.2: no AF_ALG" in proc.stderr


def process_gone(pid: int, wait: float = 5.0) -> bool:
    """Whether ``pid`` is dead: gone, or a zombie its new parent has not reaped yet."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        if stat.rpartition(")")[2].split()[0] in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_no_kernel_means_visible_skip(sandbox: Path) -> None:
    env = {
        "KSTREAM_UML_FORCE": "1",
        "KSTREAM_UML_DIR": str(sandbox / "nothing"),
        "KSTREAM_UML_KERNELS": "none",
    }
    proc = run_pytest(sandbox, HOST_TESTS, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed, 7 skipped" in proc.stdout
    assert (
        "test_k.py: no AF_ALG on this host and no User Mode Linux kernel matches "
        "KSTREAM_UML_KERNELS='none'"
    ) in proc.stdout
    assert "7 kernel tests SKIPPED: no AF_ALG on this host" in proc.stdout


def test_no_kernel_reason_names_the_install_script() -> None:
    assert "run .ci/install-uml.sh" in harness.NO_KERNEL_HINT
    assert "no AF_ALG on this host and no User Mode Linux kernel found" in harness.NO_KERNEL_HINT
