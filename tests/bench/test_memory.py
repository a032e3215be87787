"""``kstream bench`` in memory (:mod:`kstream.bench.memory`): a row per cell, consistent
numbers, and the warnings that say when the numbers mean little.
"""

from __future__ import annotations

import json
import os

import pytest
from bench.support import FAST, FakeKernelStream, check_rows, run

from kstream.backends.base import CipherOptions
from kstream.bench import machine, memory


def test_table_has_a_row_per_cell(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, *FAST, "--chunk", "1K,16K", "--backend", "openssl")
    assert code == 0
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("backend"))
    assert header.split() == [
        "backend",
        "driver",
        "transfer",
        "key",
        "chunk",
        "op",
        "MB/s",
        "ops/s",
    ]
    rows = [line for line in lines if line.startswith("openssl ")]
    assert len(rows) == 2 * 2 * 2  # transfers x chunks x ops
    assert {row.split()[3] for row in rows} == {"update", "update_into"}
    assert any(" 1 KiB " in row for row in rows) and any(" 16 KiB " in row for row in rows)
    assert "machine: " in out and "medians of 1 run after 1 warm-up run" in out
    assert "WARNING" not in out


def test_json_is_consistent(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "--seconds",
        "0.02",
        "--repeat",
        "3",
        "--key-bits",
        "128,256",
        "--chunk",
        "1K,63K",
        "--backend",
        "openssl",
        "--transfer",
        "update_into",
        "--json",
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["mode"] == "memory"
    assert doc["settings"]["repeat"] == 3 and doc["settings"]["chunks"] == [1024, 64512]
    assert {b["name"] for b in doc["backends"]} == {"openssl"}
    rows = doc["rows"]
    assert len(rows) == 2 * 2 * 2  # keys x chunks x ops
    assert {(r["key_bits"], r["chunk"], r["op"]) for r in rows} == {
        (bits, chunk, op)
        for bits in (128, 256)
        for chunk in (1024, 64512)
        for op in ("encrypt", "decrypt")
    }
    for row in rows:
        assert row["backend"] == "openssl" and row["driver"].startswith("OpenSSL")
        assert len(row["runs_mb_s"]) == 3
    check_rows(rows)
    assert doc["machine"]["cpus"] >= 1


def test_unavailable_kernel_is_said_not_hidden(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memory, "kernel_status", lambda: (False, "no AF_ALG here (simulated)"))
    code, out, _ = run(capsys, *FAST, "--chunk", "1K", "--transfer", "update")
    assert code == 0
    assert "kernel: not measured, not available here: no AF_ALG here (simulated)" in out


def test_kernel_rows_and_generic_driver_warning(
    capsys: pytest.CaptureFixture[str], simulated_kernel: list[FakeKernelStream]
) -> None:
    code, out, _ = run(capsys, *FAST, "--chunk", "1K,1M", "--backend", "kernel", "--json")
    assert code == 0
    doc = json.loads(out)
    rows = doc["rows"]
    assert {r["transfer"] for r in rows} == {"sendmsg", "splice", "sendfile"}
    assert {r["driver"] for r in rows} == {"ctr(aes-generic)"}
    assert all(r["warning"] and "generic" in r["warning"] for r in rows)
    check_rows(rows)
    assert any("ctr(aes-generic)" in w and "not representative" in w for w in doc["warnings"])
    # Each stream got the driver and the transfer of its row.
    assert {(s.options.driver, s.options.transfer) for s in simulated_kernel} == {
        ("ctr(aes-generic)", t) for t in ("sendmsg", "splice", "sendfile")
    }

    code, out, _ = run(capsys, *FAST, "--chunk", "16K", "--backend", "kernel")
    assert "ctr(aes-generic) (!)" in out
    assert "WARNING: kernel driver ctr(aes-generic)" in out
    assert "not representative" in out


def test_uml_warning(
    capsys: pytest.CaptureFixture[str],
    simulated_kernel: list[FakeKernelStream],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(memory, "kernel_drivers", lambda: ["ctr-aes-aesni"])
    monkeypatch.setenv("KSTREAM_IN_UML", "1")
    code, out, _ = run(capsys, *FAST, "--chunk", "1K", "--transfer", "sendmsg")
    assert code == 0
    assert "ctr-aes-aesni" in out and "(!)" not in out  # not a generic driver...
    assert f"WARNING: {machine.UML_WARNING}" in out  # ...but still not a real machine
    warning = machine.UML_WARNING
    assert "User Mode Linux" in warning and "not representative" in warning


def test_a_refused_driver_is_reported_and_the_rest_measured(
    capsys: pytest.CaptureFixture[str],
    simulated_kernel: list[FakeKernelStream],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(key: bytes, iv: bytes, options: CipherOptions) -> FakeKernelStream:
        if options.driver == "nope":
            from kstream.errors import BackendUnavailable

            raise BackendUnavailable("the kernel has no ctr(aes) driver 'nope'")
        return FakeKernelStream(key, iv, options)

    monkeypatch.setattr(memory, "open_kernel_stream", refuse)
    code, out, _ = run(
        capsys,
        *FAST,
        "--chunk",
        "1K",
        "--backend",
        "kernel",
        "--driver",
        "nope",
        "--driver",
        "ctr(aes-generic)",
        "--json",
    )
    assert code == 0
    doc = json.loads(out)
    assert {r["driver"] for r in doc["rows"]} == {"ctr(aes-generic)"}
    assert any("nope: not measured" in w for w in doc["warnings"])


@pytest.mark.parametrize("size", [16, 1024, 64512, 1 << 20, (2 << 20) + 5])
def test_pipe_and_memory_file_feed_every_byte_once(size: int) -> None:
    """The splice and sendfile plumbing: exactly the chunk, in order, each time (a 2 MiB
    chunk exceeds the pipe size limit, so the pipe is filled and drained in steps)."""
    data = os.urandom(size)
    stream = FakeKernelStream(bytes(16), bytes(16), CipherOptions())
    with memory._pipe(size) as (rfd, wfd, capacity):
        assert capacity >= 4096
        for _ in range(2):
            memory._splice_once(stream, rfd, wfd, data, capacity)
    assert stream.fed == data * 2
    stream.fed.clear()
    with memory._memory_file(data) as fd:
        for _ in range(2):
            memory._sendfile_once(stream, fd, size)
    assert stream.fed == data * 2


# --------------------------------------------------------------------------- kernel


@pytest.mark.kernel
def test_kernel_rows_name_the_driver_and_warn(capsys: pytest.CaptureFixture[str]) -> None:
    """Real AF_ALG (inside User Mode Linux on hosts without it): a kernel row for every
    driver and transfer, and the warning that these numbers mean little here."""
    from kstream.backends.kernel import ctr_aes_drivers, generic_warning
    from kstream.backends.kernel.sockets import drivers_by_name_refused

    drivers = [alg.driver for alg in ctr_aes_drivers()]
    assert drivers
    code, out, _ = run(
        capsys, *FAST, "--chunk", "1K,63K", "--backend", "kernel", "--op", "encrypt", "--json"
    )
    assert code == 0
    doc = json.loads(out)
    rows = doc["rows"]
    if drivers_by_name_refused() and len(drivers) > 1:
        # Linux 7.3's default binds no driver by name: the pick only, and a warning why.
        others = ", ".join(drivers[1:])
        assert memory.PICK_ONLY.format(drivers[0], others) in doc["warnings"]
        drivers = drivers[:1]
    assert {(r["driver"], r["transfer"]) for r in rows} == {
        (d, t) for d in drivers for t in ("sendmsg", "splice", "sendfile")
    }
    check_rows(rows)
    generic = [d for d in drivers if generic_warning(d)]
    for driver in generic:
        assert any(driver in w and "not representative" in w for w in doc["warnings"])
    if os.environ.get("KSTREAM_IN_UML") == "1":
        assert machine.UML_WARNING in doc["warnings"]
    if generic or os.environ.get("KSTREAM_IN_UML") == "1":
        assert doc["warnings"], "inside UML or with a generic driver there must be a warning"
    else:  # AES-NI drivers (QEMU -cpu max): nothing to warn about
        assert not any("not representative" in w for w in doc["warnings"])

    code, out, _ = run(
        capsys, *FAST, "--chunk", "1K", "--backend", "kernel", "--transfer", "splice"
    )
    assert code == 0
    assert any(line.startswith("kernel ") and drivers[0] in line for line in out.splitlines())
    if generic or os.environ.get("KSTREAM_IN_UML") == "1":
        assert "WARNING: " in out and "not representative" in out
