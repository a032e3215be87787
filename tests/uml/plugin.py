"""The pytest side of the harness; tests/conftest.py forwards its hooks here.

Where a kernel-marked test runs:

- inside UML (``KSTREAM_IN_UML=1``, set by the init script): natively, and the results are
  written to the report file for the host;
- on a host whose kernel has AF_ALG: natively, unless ``KSTREAM_UML_FORCE=1``;
- otherwise, if User Mode Linux kernels are installed: the test is parametrized by kernel, as
  the last parametrization (``test_x[uml-6.1]``, ``test_x[16-uml-6.12]``, so such an id can be
  passed on the command line), and each item is then swapped for a host item that never runs the
  test body. The first such item of a kernel to run boots that kernel once and runs all of the
  session's kernel tests inside it; each item then relays its inner test's outcome. Kernels
  boot in parallel, up to ``KSTREAM_UML_JOBS``;
- with no kernel available: skipped, with the reason in the report.
"""

from __future__ import annotations

import enum
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# The QEMU half (Debian's packaged kernels, tests/uml/qemu.py) shares this plugin: its kernels
# are parametrized, checked, booted and reported like UML's, each under its own id.
from . import qemu
from .bootcheck import CHECK_TIMEOUT, CheckResult, UmlKernel, check_all
from .harness import (
    ENV_FORCE,
    ENV_IN_UML,
    ENV_JOBS,
    ENV_KERNEL,
    ENV_KERNELS,
    ENV_REPORT,
    ENV_REQUIRE,
    NO_KERNEL_HINT,
    BootResult,
    UmlBoot,
    boot_timeout,
    discover_kernels,
)
from .qemu import QemuBoot, QemuKernel
from .report import ReportWriter, Verdict

Kernel = UmlKernel | QemuKernel

MARKER = "kernel"
MARKER_HELP = (
    f"{MARKER}: needs AF_ALG; runs natively where the kernel has it, else once per "
    "User Mode Linux kernel (see tests/uml)"
)
#: Marks that plugins act on when an item runs. A host item only relays an inner result, so
#: these are left to the inner run: on the host they would act twice, or wrongly (a skipif on
#: "AF_ALG available" is true on the host and false inside).
INNER_ONLY_MARKS = frozenset(
    {
        "skip",
        "skipif",
        "xfail",
        "usefixtures",
        "parametrize",
        "filterwarnings",
        "asyncio",
        "timeout",
        "flaky",
        "benchmark",
    }
)


class Mode(enum.Enum):
    INNER = "inner"  # this pytest runs inside UML
    NATIVE = "native"  # the host kernel has AF_ALG
    UML = "uml"  # host items relay results from UML kernels
    UNAVAILABLE = "unavailable"  # kernel tests are skipped


@dataclass
class State:
    """Per-session decisions, kept in ``config.stash``."""

    mode: Mode
    kernels: list[Kernel] = field(default_factory=list)
    skip_reason: str = ""
    #: Why the session must fail although its tests passed (``KSTREAM_QEMU_REQUIRE``).
    failure: str = ""
    runner: UmlRunner | None = None
    collected: int = 0
    #: The boot check's verdict per kernel name (made once, when kernel tests are collected).
    checks: dict[str, CheckResult] = field(default_factory=dict)

    def runs(self, kernel: Kernel) -> bool:
        check = self.checks.get(kernel.id)
        return check is None or check.usable


STATE = pytest.StashKey[State]()
#: The parameter that carries the kernel in host items' callspecs.
KERNEL_PARAM = "_uml_kernel"


def host_has_af_alg() -> bool:
    """Whether this kernel can do what the kernel tests need: bind skcipher ``ctr(aes)``."""
    try:
        with socket.socket(socket.AF_ALG, socket.SOCK_SEQPACKET) as sock:
            sock.bind(("skcipher", "ctr(aes)"))
    except (OSError, AttributeError):
        return False
    return True


def host_name(name: str, kernel: Kernel) -> str:
    """``test_x`` -> ``test_x[uml-6.1]``; ``test_x[16]`` -> ``test_x[16-uml-6.1]``."""
    if name.endswith("]") and "[" in name:
        return f"{name[:-1]}-{kernel.id}]"
    return f"{name}[{kernel.id}]"


def inner_nodeid(nodeid: str, kernel: Kernel) -> str:
    """The inner test's nodeid: the host's without the kernel's part of the parameter id.

    That part is normally last (``[16-uml-6.1]``); should a later hook have parametrized
    further, it is taken from where it is. Not found (cannot happen): the host nodeid, which
    then fails visibly as not run inside.
    """
    for before, after, keep in (("[", "]", ""), ("-", "]", "]"), ("-", "-", "-"), ("[", "-", "[")):
        token = f"{before}{kernel.id}{after}"
        at = nodeid.rfind(token)
        if at >= 0:
            return nodeid[:at] + keep + nodeid[at + len(token) :]
    return nodeid


def base_nodeid(nodeid: str) -> str:
    """The nodeid without its parametrization: the inner run re-collects every case of the
    function, so ids need not be reproducible for the argument to be valid."""
    head, sep, _ = nodeid.partition("[")
    return head if sep else nodeid


def configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    env = os.environ
    if env.get(ENV_IN_UML) == "1" or env.get(qemu.ENV_IN_QEMU) == "1":
        state = State(Mode.INNER)
        if env.get(ENV_REPORT):
            writer = ReportWriter(Path(env[ENV_REPORT]), env.get(ENV_KERNEL))
            config.pluginmanager.register(writer, "kstream-uml-report")
    elif env.get(ENV_FORCE) != "1" and host_has_af_alg():
        state = State(Mode.NATIVE)
    else:
        kernels: list[Kernel] = [*discover_kernels(env), *qemu.discover(env)]
        state = State(Mode.UML if kernels else Mode.UNAVAILABLE, kernels)
        if kernels:
            state.runner = UmlRunner(config, kernels)
        elif env.get(ENV_KERNELS):
            state.skip_reason = (
                f"no AF_ALG on this host and no User Mode Linux kernel matches "
                f"{ENV_KERNELS}={env[ENV_KERNELS]!r}"
            )
        else:
            state.skip_reason = NO_KERNEL_HINT
        if not kernels and env.get(ENV_REQUIRE):
            raise pytest.UsageError(f"{ENV_REQUIRE}={env[ENV_REQUIRE]}: {state.skip_reason}")
        if env.get(qemu.ENV_QEMU_REQUIRE) and not any(isinstance(k, QemuKernel) for k in kernels):
            raise pytest.UsageError(
                f"{qemu.ENV_QEMU_REQUIRE}={env[qemu.ENV_QEMU_REQUIRE]}: no QEMU kernel in "
                f"{qemu.cache_dir(env)} (run .ci/install-qemu.sh), so kernel coverage would be lost"
            )
    config.stash[STATE] = state


def host_workdir(config: pytest.Config, name: str) -> Path:
    """A fresh directory on the host fs (the basetemp, as long as its path has no spaces:
    it goes on the kernel command line)."""
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is not None:
        path: Path = factory.mktemp(name)
        if not any(c.isspace() for c in str(path)):
            return path
    return Path(tempfile.mkdtemp(prefix=f"kstream-{name}-", dir="/var/tmp"))


def check_kernels(config: pytest.Config, state: State) -> None:
    """Boot-check every kernel once (in parallel, ~2 s); then enforce ``KSTREAM_UML_REQUIRE``.

    A kernel that cannot run on this host is skipped from here on; one that is broken in any
    other way stays in, so that its tests fail with the console log.
    """
    timeout = min(CHECK_TIMEOUT, boot_timeout())
    uml = [k for k in state.kernels if isinstance(k, UmlKernel)]
    results = check_all(uml, host_workdir(config, "uml-check"), timeout=timeout)
    state.checks = {res.kernel.id: res for res in results}
    # QEMU kernels get no separate boot (under TCG it costs seconds, and every run, also one
    # with -m "not kernel", collects kernel tests): their first real boot is the check.
    vms = [k for k in state.kernels if isinstance(k, QemuKernel)]
    state.checks.update(qemu.tools_check(vms))
    qemu_spec = os.environ.get(qemu.ENV_QEMU_REQUIRE)
    if qemu_spec:  # what can be known before any boot: kernels installed, tools present
        need = tuple(int(n) for n in qemu_spec.split("."))
        candidates = [k for k in vms if k.version >= need and state.runs(k)]
        if not candidates:
            why = qemu.tools_missing() or f"none >= {qemu_spec} in {qemu.cache_dir()}"
            raise pytest.UsageError(
                f"{qemu.ENV_QEMU_REQUIRE}={qemu_spec}: no QEMU kernel can run the kernel tests "
                f"({why}; run .ci/install-qemu.sh)"
            )
    spec = os.environ.get(ENV_REQUIRE)
    if not spec:
        return
    need = tuple(int(n) for n in spec.split("."))
    if not any(res.status == "ok" and res.kernel.version >= need for res in results):
        found = "; ".join(
            f"{res.kernel.id} ({res.kernel.label}): {res.status}"
            f"{', ' + res.reason if res.reason else ''}"
            for res in results
        )
        raise pytest.UsageError(
            f"{ENV_REQUIRE}={spec}: no User Mode Linux kernel >= {spec} runs on this host, so "
            f"kernel coverage would be lost ({found or 'no kernel found'})"
        )


def qemu_requirement_unmet(state: State) -> str | None:
    """``KSTREAM_QEMU_REQUIRE``: why the run must fail because no QEMU kernel of at least that
    version completed its tests, or None (also when no QEMU test was selected)."""
    spec = os.environ.get(qemu.ENV_QEMU_REQUIRE)
    if not spec or state.runner is None:
        return None
    boots = {
        k.id: (k, state.runner.boots[k.id].wait())
        for k in state.kernels
        if isinstance(k, QemuKernel) and k.id in state.runner.boots
    }
    if not boots:
        return None
    need = tuple(int(n) for n in spec.split("."))
    if any(k.version >= need and r.report.finished for k, r in boots.values()):
        return None
    found = "; ".join(f"{i}: {r.problem or 'ran'}" for i, (_, r) in boots.items())
    return (
        f"{qemu.ENV_QEMU_REQUIRE}={spec}: no QEMU kernel >= {spec} ran its tests on this host, "
        f"so kernel coverage would be lost ({found})"
    )


def runs_test(kernel: Kernel, nodeid: str) -> bool:
    """Whether ``kernel`` runs the test at ``nodeid`` (QEMU kernels may run a subset)."""
    return not isinstance(kernel, QemuKernel) or kernel.runs(nodeid)


def generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize kernel tests by kernel; runs after all other parametrizations, so the
    kernel id comes last and the rest of the id is the inner test's."""
    state = metafunc.config.stash[STATE]
    if state.mode is Mode.UML and metafunc.definition.get_closest_marker(MARKER):
        kernels = [k for k in state.kernels if runs_test(k, metafunc.definition.nodeid)]
        metafunc.fixturenames.append(KERNEL_PARAM)
        metafunc.parametrize(KERNEL_PARAM, kernels, ids=[k.id for k in kernels])


def modify_items(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Swap each kernel test for its host item(s) (or mark it skipped)."""
    state = config.stash[STATE]
    if state.mode is Mode.UML and any(item.get_closest_marker(MARKER) for item in items):
        check_kernels(config, state)
    replaced: list[pytest.Item] = []
    for item in items:
        if item.get_closest_marker(MARKER) is None:
            replaced.append(item)
            continue
        state.collected += 1
        if state.mode is Mode.UML:
            callspec = getattr(item, "callspec", None)
            kernel = callspec.params.get(KERNEL_PARAM) if callspec is not None else None
            if isinstance(kernel, UmlKernel | QemuKernel):
                replaced.append(UmlItem.replacing(item, kernel))
            else:  # marked per parameter (pytest.param(..., marks=...)): not seen above
                replaced.extend(
                    UmlItem.for_kernel(item, k) for k in state.kernels if runs_test(k, item.nodeid)
                )
            continue
        if state.mode is Mode.UNAVAILABLE:
            item.add_marker(pytest.mark.skip(reason=state.skip_reason))
        replaced.append(item)
    items[:] = replaced
    # A host item waits for its kernel's whole boot (every kernel test inside it): give it the
    # boot's own limit, plus room, instead of pytest-timeout's per-test default.
    limit = pytest.mark.timeout(max(boot_timeout(), qemu.boot_timeout()) + 60)
    for item in items:
        if isinstance(item, UmlItem):
            item.add_marker(limit)
            item.host_limit = limit.mark


class UmlFailure(Exception):
    """A test failed inside UML, or its kernel broke; the message is the whole report."""


class UmlItem(pytest.Item):
    """Host stand-in for one kernel test on one UML kernel: relays the inner outcome.

    It has no fixtures and never runs the test function on the host.
    """

    def __init__(
        self,
        *,
        inner_nodeid: str,
        kernel: Kernel,
        info: tuple[Any, int | None, str],
        markers: list[pytest.Mark],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.inner_nodeid = inner_nodeid
        self.kernel = kernel
        #: The host's own time limit (the boot's), the one timeout mark not left to the inner run.
        self.host_limit: pytest.Mark | None = None
        self._info = info
        self.own_markers.extend(markers)

    @classmethod
    def replacing(cls, item: pytest.Item, kernel: Kernel) -> UmlItem:
        """The host item for ``item``, which is already parametrized by ``kernel``."""
        return cls._create_from(
            item, kernel, item.name, inner_nodeid(item.nodeid, kernel), item.reportinfo()
        )

    @classmethod
    def for_kernel(cls, item: pytest.Item, kernel: Kernel) -> UmlItem:
        """A host item for ``item`` (not parametrized by kernel) on ``kernel``."""
        path, lineno, domain = item.reportinfo()
        return cls._create_from(
            item,
            kernel,
            host_name(item.name, kernel),
            item.nodeid,
            (path, lineno, host_name(domain, kernel)),
        )

    @classmethod
    def _create_from(
        cls,
        item: pytest.Item,
        kernel: Kernel,
        name: str,
        inner: str,
        info: tuple[Any, int | None, str],
    ) -> UmlItem:
        assert item.parent is not None
        new: UmlItem = cls.from_parent(
            item.parent,
            name=name,
            inner_nodeid=inner,
            kernel=kernel,
            info=info,
            markers=list(item.own_markers),
        )
        new.extra_keyword_matches.update(item.extra_keyword_matches)
        return new

    def iter_markers_with_node(self, name: str | None = None) -> Iterator[tuple[Any, Any]]:
        for node, mark in super().iter_markers_with_node(name):
            if mark.name not in INNER_ONLY_MARKS or mark == self.host_limit:
                yield node, mark

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self._info

    def runtest(self) -> None:
        state = self.config.stash[STATE]
        if not state.runs(self.kernel):
            # reported at the test's own location, as a skip mark would be
            reason = f"{self.kernel.id}: {state.checks[self.kernel.id].reason}"
            raise pytest.skip.Exception(reason, _use_item_location=True)
        runner = state.runner
        assert runner is not None
        result = runner.result(self.kernel, self.session)
        if isinstance(self.kernel, QemuKernel) and not qemu.booted(result):
            pytest.skip(f"{self.kernel.id}: {qemu.not_booted_reason(result)}")
        verdict = verdict_for(result, self.inner_nodeid)
        if verdict.status == "skipped":
            pytest.skip(verdict.message or f"skipped inside {self.kernel.id}")
        if verdict.status == "xfailed":
            pytest.xfail(verdict.message)
        if verdict.status == "failed":
            raise UmlFailure(verdict.message)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, UmlFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)


def verdict_for(result: BootResult, nodeid: str) -> Verdict:
    """The host outcome of inner test ``nodeid``, given its kernel's boot."""
    where = f"{result.kernel.id} ({result.release or 'release unknown'}, {result.kernel.label})"
    if result.problem:
        return Verdict(
            "failed",
            f"User Mode Linux {where}: {result.problem}\n"
            f"console log {result.console_log}, last lines:\n"
            f"{result.console_tail()}",
        )
    record = result.report.tests.get(nodeid)
    if record is None:
        text = (
            f"{nodeid} did not run inside {where}; inner pytest exit status "
            f"{result.report.exitstatus}, console log {result.console_log}"
        )
        for collector, longrepr in result.report.collect_errors:
            text += f"\n\ncollection error in {collector}:\n{longrepr}"
        if not result.report.collect_errors:
            text += f", last lines:\n{result.console_tail(30)}"
        return Verdict("failed", text)
    verdict = record.verdict()
    if verdict.status == "failed":
        return Verdict("failed", f"failed inside {where}:\n{verdict.message}")
    return verdict


class UmlRunner:
    """Boots each kernel at most once per session, lazily, and keeps the results."""

    def __init__(self, config: pytest.Config, kernels: list[Kernel]) -> None:
        self.config = config
        self.kernels = kernels
        self.timeout = boot_timeout()
        self.jobs = max(1, int(os.environ.get(ENV_JOBS) or os.cpu_count() or 1))
        self.boots: dict[str, UmlBoot] = {}  # by kernel id
        self._wanted: dict[str, list[str]] | None = None

    def wanted(self, session: pytest.Session) -> dict[str, list[str]]:
        """Per kernel name, the nodeids to run inside (from the final, deselected item list)."""
        if self._wanted is None:
            self._wanted = {}
            state = self.config.stash[STATE]
            for item in session.items:
                if isinstance(item, UmlItem) and state.runs(item.kernel):
                    ids = self._wanted.setdefault(item.kernel.id, [])
                    if base_nodeid(item.inner_nodeid) not in ids:
                        ids.append(base_nodeid(item.inner_nodeid))
        return self._wanted

    def result(self, kernel: Kernel, session: pytest.Session) -> BootResult:
        """``kernel``'s boot result; while waiting for it, a slot another boot frees is
        given to the next kernel at once, so that ``jobs`` boots keep running."""
        if kernel.id not in self.boots:
            self._start(kernel, session)
        boot = self.boots[kernel.id]
        deadline = boot._started + boot.timeout  # its own limit; wait() then enforces it
        while boot.running and time.monotonic() < deadline:
            self._start(None, session)
            time.sleep(0.5)
        return boot.wait()

    def _start(self, first: Kernel | None, session: pytest.Session) -> None:
        """Start ``first``, and more kernels that have tests while fewer than ``jobs`` run."""
        wanted = self.wanted(session)
        # The longest boots first (a whole suite under TCG takes minutes), so that the short
        # ones fill the gaps instead of leaving a long one to run alone at the end.
        others = sorted(
            (k for k in self.kernels if k is not first),
            key=lambda k: len(wanted.get(k.id, [])) * (10 if isinstance(k, QemuKernel) else 1),
            reverse=True,
        )
        for kernel in [*([first] if first is not None else []), *others]:
            if kernel.id in self.boots or kernel.id not in wanted:
                continue
            running = sum(boot.running for boot in self.boots.values())
            if kernel is not first and running >= self.jobs:
                break
            workdir = host_workdir(self.config, f"{kernel.id}-boot")
            boot: UmlBoot
            if isinstance(kernel, QemuKernel):
                argv = self.inner_argv(Path(qemu.GUEST_BASETEMP), wanted[kernel.id])
                argv.insert(-len(wanted[kernel.id]), f"--timeout={qemu.INNER_TEST_TIMEOUT}")
                boot = QemuBoot(
                    kernel,
                    workdir,
                    argv=argv,
                    cwd=self.config.rootpath,
                    timeout=qemu.boot_timeout(),
                )
            else:
                boot = UmlBoot(
                    kernel,
                    workdir,
                    argv=self.inner_argv(workdir / "basetemp", wanted[kernel.id]),
                    cwd=self.config.rootpath,
                    timeout=self.timeout,
                )
            self.boots[kernel.id] = boot
            boot.start()

    def inner_argv(self, basetemp: Path, nodeids: list[str]) -> list[str]:
        """The inner pytest: same interpreter, rootdir and ini file, only kernel tests, and
        nothing written into the repository (no cache; ``basetemp`` in the boot's workdir,
        or a tmpfs in a QEMU guest)."""
        option = self.config.option
        argv = [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            MARKER,
            "-p",
            "no:cacheprovider",
            f"--rootdir={self.config.rootpath}",
            f"--basetemp={basetemp}",
            "--color=no",
            "-v",
            "-ra",
            f"--tb={getattr(option, 'tbstyle', 'auto')}",
        ]
        if self.config.inipath is not None:
            argv += ["-c", str(self.config.inipath)]
        if getattr(option, "showlocals", False):
            argv.append("-l")
        return argv + nodeids

    def shutdown(self) -> None:
        """Stop the kernels still running (the session ended early, e.g. ``-x``)."""
        for boot in self.boots.values():
            boot.stop()


def report_header(config: pytest.Config) -> str | None:
    state = config.stash.get(STATE, None)
    if state is None or state.mode is not Mode.UML:
        return None
    names = ", ".join(f"{k.id} ({k.label})" for k in state.kernels if isinstance(k, UmlKernel))
    vms = ", ".join(k.id for k in state.kernels if isinstance(k, QemuKernel))
    where = f"in User Mode Linux {names}" if names else ""
    if vms:
        where += f"{' and ' if where else 'in '}QEMU {vms}"
    return f"kernel tests: {where}, each boot-checked first (the summary says which ran)"


def shutdown(session: pytest.Session) -> None:
    """Stop what still runs; fail the run if ``KSTREAM_QEMU_REQUIRE`` is not met."""
    state = session.config.stash.get(STATE, None)
    if state is None or state.runner is None:
        return
    state.runner.shutdown()
    unmet = qemu_requirement_unmet(state)
    if unmet is not None:
        state.failure = unmet
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def summary_title(state: State) -> str:
    """The summary's separator line: which kernels ran the tests, which were skipped, why."""
    title = "kstream kernel tests"
    if state.mode is not Mode.UML or not state.checks:
        return title
    ran = [k.id for k in state.kernels if state.runs(k)]
    skipped: dict[str, list[str]] = {}
    for kernel in state.kernels:
        if not state.runs(kernel):
            reason = state.checks[kernel.id].reason.partition(":")[0]
            skipped.setdefault(reason, []).append(kernel.id)
    title += f": ran on {', '.join(ran) or 'no kernel'}"
    for reason, ids in skipped.items():
        title += f"; skipped {', '.join(ids)} ({reason})"
    return title


def summary_lines(state: State) -> list[str]:
    """What the terminal summary says about where the kernel tests ran."""
    if state.mode is Mode.INNER:
        if os.environ.get(qemu.ENV_IN_QEMU) == "1":
            user = os.environ.get(qemu.ENV_QEMU_USER, "root")
            return [f"kernel tests ran inside QEMU, Linux {os.uname().release}, as {user}"]
        return [f"kernel tests ran inside User Mode Linux {os.uname().release}"]
    if not state.collected or (state.mode is Mode.UML and not state.checks):
        return []  # e.g. --collect-only, or every kernel test deselected
    if state.mode is Mode.NATIVE:
        return [f"kernel tests ran natively: this kernel ({os.uname().release}) has AF_ALG"]
    if state.mode is Mode.UNAVAILABLE:
        return [f"{state.collected} kernel tests SKIPPED: {state.skip_reason}"]
    assert state.runner is not None
    vms = any(isinstance(k, QemuKernel) for k in state.kernels)
    lines = ["kernel tests in User Mode Linux" + (" and QEMU:" if vms else ":")]
    for kernel in state.kernels:
        check = state.checks.get(kernel.id)
        boot = state.runner.boots.get(kernel.id)
        if check is not None and not check.usable:
            lines.append(
                f"  {kernel.id} ({check.release or '?'}, {kernel.label}): SKIPPED, "
                f"{check.reason}; boot check console log {check.console_log}"
            )
            continue
        if boot is None:
            lines.append(f"  {kernel.id} ({kernel.label}): not booted (no tests of it ran)")
            continue
        result = boot.wait()
        count = len(result.report.tests)
        if result.problem is None:
            status = f"{count} test{'s' if count != 1 else ''}"
        else:
            status = result.problem if result.stopped else f"BROKEN: {result.problem}"
        lines.append(
            f"  {kernel.id} ({result.release or '?'}, {kernel.label}): {status}, "
            f"{result.duration:.1f} s; console log {result.console_log}"
        )
    return lines


def terminal_summary(reporter: Any, config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    lines = summary_lines(state) if state is not None else []
    if state is not None and state.failure:
        lines.append(f"FAILED: {state.failure}")
    if lines:
        assert state is not None
        reporter.write_sep("-", summary_title(state))
        for line in lines:
            reporter.write_line(line)
