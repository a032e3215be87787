"""``kstream bench``: the structure and internal consistency of what it reports.

Never a timing assertion: these machines are shared and noisy. Budgets are tiny so the whole
module takes a few seconds. The kernel rows are checked with a simulated kernel here (OpenSSL
dressed as a kernel stream, this host has no AF_ALG) and for real in the ``kernel`` test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from kstream import bench, benchfiles, benchmem
from kstream.backends.base import CipherOptions
from kstream.backends.openssl import OpenSSLStream

FAST = ["--seconds", "0.01", "--repeat", "1", "--key-bits", "128"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = bench.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


class FakeKernelStream:
    """OpenSSL posing as a kernel stream: ``update_from_fd`` reads the fd like splice would.

    Records everything it was fed, so that the bench's pipe and memory-file plumbing can be
    checked byte for byte without AF_ALG.
    """

    def __init__(self, key: bytes, iv: bytes, options: CipherOptions) -> None:
        self._inner = OpenSSLStream(key, iv)
        self.options = options
        self.description = f"simulated kernel {options.driver}"
        self.fed = bytearray()

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        self.fed += data
        return self._inner.update(data)

    def finalize(self) -> bytes:
        return self._inner.finalize()

    def close(self) -> None:
        self._inner.close()

    def accepts_fd(self, fd: int) -> bool:
        return True

    def update_from_fd(self, fd: int, max_bytes: int) -> tuple[bytes, int]:
        data = os.read(fd, max_bytes)
        return self.update(data), len(data)


@pytest.fixture
def simulated_kernel(monkeypatch: pytest.MonkeyPatch) -> list[FakeKernelStream]:
    """A kernel backend with only the generic C driver, as inside User Mode Linux."""
    opened: list[FakeKernelStream] = []

    def open_stream(key: bytes, iv: bytes, options: CipherOptions) -> FakeKernelStream:
        stream = FakeKernelStream(key, iv, options)
        opened.append(stream)
        return stream

    monkeypatch.setattr(benchmem, "kernel_status", lambda: (True, "simulated"))
    monkeypatch.setattr(benchmem, "kernel_drivers", lambda: ["ctr(aes-generic)"])
    monkeypatch.setattr(benchmem, "open_kernel_stream", open_stream)
    monkeypatch.delenv("KSTREAM_IN_UML", raising=False)
    return opened


def check_rows(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        assert row["mb_s"] > 0 and row["ops_s"] > 0 and row["ops"] >= 1
        # MB/s and ops/s are medians of the same runs: exactly chunk apart.
        assert row["ops_s"] * row["chunk"] / 1e6 == pytest.approx(row["mb_s"], rel=1e-9)
        assert all(value > 0 for value in row["runs_mb_s"])


# --------------------------------------------------------------------------- in memory


def test_table_has_a_row_per_cell(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, *FAST, "--chunk", "1K,16K", "--backend", "openssl")
    assert code == 0
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("backend"))
    assert header.split() == ["backend", "driver", "transfer", "key", "chunk", "op", "MB/s",
                              "ops/s"]
    rows = [line for line in lines if line.startswith("openssl ")]
    assert len(rows) == 2 * 2 * 2  # transfers x chunks x ops
    assert {row.split()[3] for row in rows} == {"update", "update_into"}
    assert any(" 1 KiB " in row for row in rows) and any(" 16 KiB " in row for row in rows)
    assert "machine: " in out and "medians of 1 run after 1 warm-up run" in out
    assert "WARNING" not in out


def test_json_is_consistent(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--seconds", "0.02", "--repeat", "3", "--key-bits", "128,256",
                       "--chunk", "1K,63K", "--backend", "openssl", "--transfer", "update_into",
                       "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["mode"] == "memory"
    assert doc["settings"]["repeat"] == 3 and doc["settings"]["chunks"] == [1024, 64512]
    assert {b["name"] for b in doc["backends"]} == {"openssl"}
    rows = doc["rows"]
    assert len(rows) == 2 * 2 * 2  # keys x chunks x ops
    assert {(r["key_bits"], r["chunk"], r["op"]) for r in rows} == {
        (bits, chunk, op) for bits in (128, 256) for chunk in (1024, 64512)
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
    monkeypatch.setattr(benchmem, "kernel_status", lambda: (False, "no AF_ALG here (simulated)"))
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


def test_uml_warning(capsys: pytest.CaptureFixture[str],
                     simulated_kernel: list[FakeKernelStream],
                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(benchmem, "kernel_drivers", lambda: ["ctr-aes-aesni"])
    monkeypatch.setenv("KSTREAM_IN_UML", "1")
    code, out, _ = run(capsys, *FAST, "--chunk", "1K", "--transfer", "sendmsg")
    assert code == 0
    assert "ctr-aes-aesni" in out and "(!)" not in out  # not a generic driver...
    assert f"WARNING: {benchmem.UML_WARNING}" in out  # ...but still not a real machine
    warning = benchmem.UML_WARNING
    assert "User Mode Linux" in warning and "not representative" in warning


def test_a_refused_driver_is_reported_and_the_rest_measured(
    capsys: pytest.CaptureFixture[str], simulated_kernel: list[FakeKernelStream],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(key: bytes, iv: bytes, options: CipherOptions) -> FakeKernelStream:
        if options.driver == "nope":
            from kstream.errors import BackendUnavailable

            raise BackendUnavailable("the kernel has no ctr(aes) driver 'nope'")
        return FakeKernelStream(key, iv, options)

    monkeypatch.setattr(benchmem, "open_kernel_stream", refuse)
    code, out, _ = run(capsys, *FAST, "--chunk", "1K", "--backend", "kernel", "--driver",
                       "nope", "--driver", "ctr(aes-generic)", "--json")
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
    with benchmem._pipe(size) as (rfd, wfd, capacity):
        assert capacity >= 4096
        for _ in range(2):
            benchmem._splice_once(stream, rfd, wfd, data, capacity)
    assert stream.fed == data * 2
    stream.fed.clear()
    with benchmem._memory_file(data) as fd:
        for _ in range(2):
            benchmem._sendfile_once(stream, fd, size)
    assert stream.fed == data * 2


def test_plot_without_matplotlib_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    code, out, err = run(capsys, *FAST, "--chunk", "1K", "--plot", str(tmp_path / "p.png"))
    assert code == 2
    assert out == ""  # refused before measuring anything
    assert err == f"kstream: error: {bench.PLOT_HINT}\n"
    assert "install kstream[plot]" in err
    assert not (tmp_path / "p.png").exists()


def test_plot_is_refused_with_files(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--files", "--plot", "x.png")
    assert code == 2 and out == "" and "does not apply to --files" in err


def test_plot_draws_a_png(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                          simulated_kernel: list[FakeKernelStream]) -> None:
    pytest.importorskip("matplotlib")
    target = tmp_path / "bench.png"
    code, out, _ = run(capsys, *FAST, "--chunk", "1K,16K", "--plot", str(target))
    assert code == 0 and f"plot written to {target}" in out
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_series_average_encrypt_and_decrypt() -> None:
    from kstream.benchplot import series

    rows = [
        benchmem.MemoryRow("openssl", "OpenSSL 3", "update", 128, 1024, "encrypt", 10.0, 1.0),
        benchmem.MemoryRow("openssl", "OpenSSL 3", "update", 128, 1024, "decrypt", 20.0, 1.0),
        benchmem.MemoryRow("kernel", "ctr(aes-generic)", "splice", 128, 2048, "encrypt", 5.0, 1.0,
                        warning="generic"),
    ]
    report = benchmem.MemoryReport({}, {}, [], [], rows)
    assert series(report) == {128: {
        "openssl OpenSSL 3 (update)": [(1024, 15.0)],
        "kernel ctr(aes-generic) (splice) [generic]": [(2048, 5.0)],
    }}


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(("text", "size"), [
    ("4096", 4096), ("1K", 1024), ("63K", 64512), ("1M", 1 << 20), ("1G", 1 << 30),
    ("10GiB", 10 << 30), ("1.5k", 1536), ("2mb", 2 << 20),
])
def test_parse_size(text: str, size: int) -> None:
    assert bench.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "abc", "1X", "0", "-5"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        bench.parse_size(text)


def test_bad_options_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--key-bits", "512"], ["--chunk", "1Q"], ["--seconds", "0"],
                 ["--repeat", "0"], ["--transfer", "carrier-pigeon"]):
        with pytest.raises(SystemExit) as exc:
            bench.main(argv)
        assert exc.value.code == 2
    capsys.readouterr()


def test_registers_on_a_cli_parser() -> None:
    """``add_bench_parser`` plugs into a parser the way kstream.cli builds its subcommands."""
    parser = argparse.ArgumentParser(prog="kstream")
    sub = parser.add_subparsers(dest="command")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    bench.add_bench_parser(sub, common)
    args = parser.parse_args(["bench", "--debug", "--files", "--size", "4M"])
    assert args.command == "bench" and args.debug and args.files and args.size == 4 << 20
    assert args.dir is None and args.repeat == bench.DEFAULT_REPEAT and args.warmup == 1
    args = parser.parse_args(["bench"])
    assert not args.files and args.seconds is None and args.plot is None


def test_default_dir_and_filesystem_type() -> None:
    directory = benchfiles.default_dir()
    assert os.path.isdir(directory)
    if os.path.isdir("/dev/shm"):
        assert directory == "/dev/shm"
        assert benchfiles.filesystem_type("/dev/shm") == "tmpfs"
    assert benchfiles.filesystem_type("/proc") == "proc"


# --------------------------------------------------------------------------- files


@pytest.fixture(scope="module")
def files_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    where = tmp_path_factory.mktemp("bench-files")
    report = benchfiles.run_files(size=4 << 20, directory=str(where), repeat=2, warmup=0,
                                  rss_size=8 << 20, backends=["openssl"])
    return where, report


def test_files_report_structure(files_report: tuple[Path, Any]) -> None:
    where, report = files_report
    assert list(where.iterdir()) == []  # everything generated was removed
    doc = json.loads(json.dumps(report.to_json()))
    assert doc["mode"] == "files" and doc["settings"]["size"] == 4 << 20
    entries = {e["id"]: e for e in doc["entries"]}
    assert set(entries) == {
        "cp", "cmd-openssl-enc", "cmd-openssl-dec", "cmd-openssl-pipe", "cmd-cat-pipe",
        *(f"kstream-openssl-{name}" for name in (
            "raw-enc", "raw-dec", "enc", "dec", "stdout", "pipe", "api-file", "api-stream",
            "api-stream-asyncio")),
    }
    for entry in entries.values():
        assert len(entry["times"]) == 2 and entry["median_s"] > 0 and entry["mb_s"] > 0
    for name in ("raw-enc", "raw-dec", "enc", "dec", "stdout", "pipe"):
        entry = entries[f"kstream-openssl-{name}"]
        assert entry["ratio"] > 0 and entry["baseline"].startswith("cmd-openssl")
        assert 0 < entry["peak_rss_mib"] < 1024
    assert entries["kstream-openssl-api-file"]["baseline"] == "kstream-openssl-enc"
    assert entries["kstream-openssl-api-file"]["compare"] == "throughput"
    assert entries["kstream-openssl-api-stream"]["baseline"] == "kstream-openssl-stdout"
    # The default-loop run is shown for information; only the run on the CLI's loop is judged.
    assert entries["kstream-openssl-api-stream-asyncio"]["ratio"] > 0
    assert entries["kstream-openssl-api-file"]["peak_rss_mib"] is None
    goals = {g["entry"]: g for g in doc["goals"]}
    assert {g["verdict"] for g in goals.values()} <= {"PASS", "MISS"}
    assert "kstream-openssl-api-stream-asyncio" not in goals
    # tmpfs measures the CPU work (the ratios); a disk is writeback-bound (<= 1.05x).
    on_disk = doc["settings"]["filesystem"] not in ("tmpfs", "ramfs")
    assert doc["settings"]["on_disk"] == on_disk
    assert goals["kstream-openssl-raw-enc"]["goal"] == ("<= 1.05x" if on_disk else "<= 0.70x")
    assert goals["kstream-openssl-enc"]["goal"] == ("<= 1.05x" if on_disk else "<= 0.80x")
    assert goals["kstream-openssl-pipe"]["goal"] == ("<= 1.05x" if on_disk else "<= 0.85x")
    assert goals["kstream-openssl-api-file"]["goal"] == ">= 0.90x"
    assert goals["rss"]["goal"] == "<= 64 MiB" and goals["rss"]["ratio"] > 0
    assert [r["backend"] for r in doc["rss_runs"]] == ["openssl", "openssl"]
    assert all(r["size"] == 8 << 20 and r["rss_mib"] > 0 for r in doc["rss_runs"])


def test_files_report_text(files_report: tuple[Path, Any]) -> None:
    _, report = files_report
    text = benchfiles.format_files_report(report)
    assert "4 MiB generated file in" in text
    for label in ("cp", "openssl enc -aes-128-ctr", "kstream encrypt --raw (openssl)",
                  "kstream decrypt (openssl)", "cat | kstream encrypt - - | cat (openssl)",
                  "API encrypt_file (openssl)", "API encrypt_stream, aiofiles (openssl)",
                  "API encrypt_stream, aiofiles, asyncio.run (openssl)"):
        assert f"\n{label} " in text
    goal_lines = [line for line in text.splitlines() if line.startswith(("  PASS", "  MISS"))]
    assert len(goal_lines) == 7 + 1 + 2  # ratios, RSS of the runs, the two sparse runs
    assert all("goal " in line for line in goal_lines)


def test_files_refuses_a_directory_without_room(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from kstream.errors import UsageError

    class Tiny:
        f_bavail, f_frsize = 1, 4096

    monkeypatch.setattr(benchfiles.os, "statvfs", lambda _: Tiny())
    with pytest.raises(UsageError, match="free"):
        benchfiles.run_files(size=1 << 30, directory=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_generated_file_has_no_repeated_mib(tmp_path: Path) -> None:
    path = tmp_path / "f"
    benchfiles.generate_file(str(path), (3 << 20) + 7)
    data = path.read_bytes()
    assert len(data) == (3 << 20) + 7
    blocks = {data[i : i + (1 << 20)] for i in range(0, 3 << 20, 1 << 20)}
    assert len(blocks) == 3


def test_decrypts_to_checks_content_and_tags(tmp_path: Path) -> None:
    import asyncio

    import kstream

    plain, enc, key_path = tmp_path / "p", tmp_path / "c", tmp_path / "k"
    plain.write_bytes(os.urandom(3 << 20))
    kstream.Key.generate(128).save(key_path)
    asyncio.run(kstream.encrypt_file(plain, enc, key=kstream.Key.from_file(key_path),
                                     backend="openssl"))
    assert benchfiles.decrypts_to(str(enc), str(plain), str(key_path))
    other = tmp_path / "o"
    changed = bytearray(plain.read_bytes())
    changed[-1] ^= 1
    other.write_bytes(changed)
    assert not benchfiles.decrypts_to(str(enc), str(other), str(key_path))
    data = bytearray(enc.read_bytes())
    data[100] ^= 1
    enc.write_bytes(data)
    assert not benchfiles.decrypts_to(str(enc), str(plain), str(key_path))


# --------------------------------------------------------------------------- kernel


@pytest.mark.kernel
def test_kernel_rows_name_the_driver_and_warn(capsys: pytest.CaptureFixture[str]) -> None:
    """Real AF_ALG (inside User Mode Linux on hosts without it): a kernel row for every
    driver and transfer, and the warning that these numbers mean little here."""
    from kstream.backends.afalg import ctr_aes_drivers, generic_warning

    drivers = [alg.driver for alg in ctr_aes_drivers()]
    assert drivers
    code, out, _ = run(capsys, *FAST, "--chunk", "1K,63K", "--backend", "kernel", "--op",
                       "encrypt", "--json")
    assert code == 0
    doc = json.loads(out)
    rows = doc["rows"]
    assert {(r["driver"], r["transfer"]) for r in rows} == {
        (d, t) for d in drivers for t in ("sendmsg", "splice", "sendfile")
    }
    check_rows(rows)
    generic = [d for d in drivers if generic_warning(d)]
    for driver in generic:
        assert any(driver in w and "not representative" in w for w in doc["warnings"])
    if os.environ.get("KSTREAM_IN_UML") == "1":
        assert benchmem.UML_WARNING in doc["warnings"]
    assert doc["warnings"], "inside UML or with a generic driver there must be a warning"

    code, out, _ = run(capsys, *FAST, "--chunk", "1K", "--backend", "kernel", "--transfer",
                       "splice")
    assert code == 0
    assert any(line.startswith("kernel ") and drivers[0] in line for line in out.splitlines())
    assert "WARNING: " in out and "not representative" in out
