"""What describes the machine (:mod:`kstream.bench.machine`): the one ``machine:`` line of both
reports, and the User Mode Linux detection behind the warning."""

from __future__ import annotations

import pytest

from kstream.bench import machine


def test_describe_machine_leaves_out_what_is_unknown() -> None:
    info = {
        "cpus": 1,
        "cpu_model": None,
        "kernel": "6.1.0",
        "distribution": None,
        "python": "3.11.7",
        "openssl": "OpenSSL 3.0.15",
        "in_uml": True,
    }
    assert machine.describe_machine(info) == (
        "1 CPU, Linux 6.1.0, Python 3.11.7, OpenSSL 3.0.15, inside User Mode Linux"
    )
    info.update(cpus=2, cpu_model="Some CPU", distribution="Debian 12", in_uml=False)
    assert machine.describe_machine(info) == (
        "2 CPUs, Some CPU, Linux 6.1.0, Debian 12, Python 3.11.7, OpenSSL 3.0.15"
    )


def test_machine_info_and_the_harness_uml_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KSTREAM_IN_UML", "1")
    info = machine.machine_info()
    assert info["in_uml"] is True and info["cpus"] >= 1
    assert info["openssl"]  # e.g. "OpenSSL 3.0.15"
