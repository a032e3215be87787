"""Root conftest: the ``kernel`` marker, and running kernel tests in User Mode Linux.

A test marked ``@pytest.mark.kernel`` needs AF_ALG. It runs natively where the kernel has it;
on a host without it, once inside each installed User Mode Linux kernel (``.ci/install-uml.sh``),
reported on the host as ``test_x[uml-6.1]``, ``test_x[uml-6.12]``, ...; with no kernel at all it
is skipped with the reason shown. The machinery lives in tests/uml/ (see its ``plugin`` module).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

# Import the harness under the same name the test modules in tests/uml/ get: ``tests.uml`` if
# tests/ is a package, else ``uml`` (pytest puts tests/ on sys.path, or pythonpath does).
if (Path(__file__).parent / "__init__.py").exists():
    from .uml import plugin as uml  # type: ignore[import-not-found, no-redef, unused-ignore]
else:
    _HERE = str(Path(__file__).resolve().parent)
    if _HERE not in sys.path:
        sys.path.insert(0, _HERE)
    from uml import plugin as uml

try:
    from buffers import overlap
except ImportError:  # a sandbox that copies only this file and uml/ (tests/uml/test_harness)
    overlap = None  # type: ignore[assignment]


@pytest.fixture(autouse=True)
def _update_into_never_overlaps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every in-process ``update_into`` is given an output that does not overlap its input
    (see tests/buffers.py), with any version of cryptography."""
    if overlap is None:
        return
    from kstream.backends.openssl import OpenSSLStream

    real = OpenSSLStream.update_into

    def checked(
        self: OpenSSLStream, data: bytes | bytearray | memoryview, out: bytearray | memoryview
    ) -> int:
        assert not overlap(data, out), "update_into was given overlapping buffers"
        return real(self, data, out)

    monkeypatch.setattr(OpenSSLStream, "update_into", checked)


def pytest_configure(config: pytest.Config) -> None:
    uml.configure(config)


@pytest.hookimpl(trylast=True)  # after the tests' own parametrizations: the kernel id is last
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    uml.generate_tests(metafunc)


@pytest.hookimpl(tryfirst=True)  # before -k/-m deselection, so those see the per-kernel items
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    uml.modify_items(config, items)


def pytest_report_header(config: pytest.Config) -> str | None:
    header: str | None = uml.report_header(config)
    return header


def pytest_sessionfinish(session: pytest.Session) -> None:
    uml.shutdown(session)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    uml.terminal_summary(terminalreporter, config)
