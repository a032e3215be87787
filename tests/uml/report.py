"""The per-test report that the pytest inside UML writes and the host reads back.

Format: JSON lines, one event per line. Events:

- ``{"event": "start", "release": ..., "kernel": ...}`` at session start;
- ``{"event": "collect_error", "nodeid": ..., "longrepr": ...}`` for each failed collector;
- ``{"event": "test", "nodeid", "when", "outcome", "longrepr", "reason", "wasxfail",
  "sections"}`` for each setup/call/teardown phase;
- ``{"event": "finish", "exitstatus": ...}``: the inner run completed. Without it the host
  treats the boot as broken, whatever else the file holds.

The file is fsynced once, at the end (per event would cost ~35 ms each here); a truncated
last line (the kernel died mid-write) is ignored.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import pytest

Status = Literal["passed", "failed", "skipped", "xfailed"]


@dataclass(frozen=True)
class Verdict:
    """How a host item ends: its status and the text shown for it."""

    status: Status
    message: str = ""


@dataclass
class Phase:
    when: str
    outcome: str
    longrepr: str = ""
    reason: str = ""
    wasxfail: str | None = None
    sections: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class InnerTest:
    """All phases of one inner test."""

    nodeid: str
    phases: dict[str, Phase] = field(default_factory=dict)

    def verdict(self) -> Verdict:
        """Fold setup/call/teardown into one outcome the way pytest's own summary does."""
        failed = [p for p in self.phases.values() if p.outcome == "failed"]
        if failed:
            return Verdict("failed", "\n\n".join(_failure_text(p) for p in failed))
        for phase in (self.phases.get("setup"), self.phases.get("call")):
            if phase is not None and phase.outcome == "skipped":
                if phase.wasxfail is not None:
                    return Verdict("xfailed", phase.wasxfail)
                return Verdict("skipped", phase.reason)
        if "call" not in self.phases:
            return Verdict("failed", f"incomplete: only {sorted(self.phases)} were reported")
        return Verdict("passed")  # an unexpected pass of a non-strict xfail included


def _failure_text(phase: Phase) -> str:
    text = phase.longrepr if phase.when == "call" else f"[{phase.when}]\n{phase.longrepr}"
    for title, content in phase.sections:
        text += f"\n{'-' * 20} {title} {'-' * 20}\n{content.rstrip()}"
    return text


@dataclass
class InnerReport:
    """Everything the inner run reported; empty if it never started."""

    release: str | None = None
    finished: bool = False
    exitstatus: int | None = None
    tests: dict[str, InnerTest] = field(default_factory=dict)
    collect_errors: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> InnerReport:
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return cls()
        return cls.parse(lines)

    @classmethod
    def parse(cls, lines: list[str]) -> InnerReport:
        report = cls()
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue  # cut short by a dying kernel
            report.add(event)
        return report

    def add(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "start":
            self.release = event.get("release")
        elif kind == "collect_error":
            self.collect_errors.append((event["nodeid"], event.get("longrepr", "")))
        elif kind == "test":
            record = self.tests.setdefault(event["nodeid"], InnerTest(event["nodeid"]))
            record.phases[event["when"]] = Phase(
                when=event["when"],
                outcome=event["outcome"],
                longrepr=event.get("longrepr", ""),
                reason=event.get("reason", ""),
                wasxfail=event.get("wasxfail"),
                sections=[(t, c) for t, c in event.get("sections", [])],
            )
        elif kind == "finish":
            self.finished = True
            self.exitstatus = event.get("exitstatus")


def phase_event(report: pytest.TestReport) -> dict[str, Any]:
    """The JSON event for one phase of one test."""
    reason = ""
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2]).removeprefix("Skipped: ")
    wasxfail = getattr(report, "wasxfail", None)
    return {
        "event": "test",
        "nodeid": report.nodeid,
        "when": report.when,
        "outcome": report.outcome,
        "duration": report.duration,
        "longrepr": report.longreprtext if report.failed else "",
        "reason": reason,
        "wasxfail": None if wasxfail is None else str(wasxfail),
        "sections": [list(s) for s in report.sections] if report.failed else [],
    }


class ReportWriter:
    """pytest plugin (registered inside UML only) that writes the report file."""

    def __init__(self, path: Path, kernel: str | None = None) -> None:
        self.path = path
        self.kernel = kernel
        self._file: IO[str] | None = None

    def _write(self, event: dict[str, Any]) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(json.dumps(event) + "\n")
        self._file.flush()  # to the kernel; the init script syncs before power-off

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self._write({"event": "start", "release": os.uname().release, "kernel": self.kernel})

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self._write(
                {"event": "collect_error", "nodeid": report.nodeid, "longrepr": report.longreprtext}
            )

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._write(phase_event(report))

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self._write({"event": "finish", "exitstatus": int(exitstatus)})
        if self._file is not None:
            os.fsync(self._file.fileno())  # hostfs keeps writes in the UML page cache
            self._file.close()
            self._file = None
