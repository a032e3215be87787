"""``kstream selftest``: the NIST vectors, the report, and what counts as a failure."""

from __future__ import annotations

import json
from typing import Any

import pytest
from reference import ctr

from kstream import selftest
from kstream.backends.kernel.procfs import implementations, read_proc_crypto
from kstream.backends.kernel.sockets import drivers_by_name_refused
from kstream.backends.openssl import OpenSSLStream
from kstream.errors import BackendUnavailable
from kstream.selftest import (
    CARRY_VECTORS,
    NIST_COUNTER,
    NIST_CTR_VECTORS,
    NIST_PLAINTEXT,
    SelftestReport,
    format_table,
    run_selftest,
)


def test_vectors_are_sp800_38a_f5() -> None:
    assert [v.label for v in NIST_CTR_VECTORS] == [
        "F.5.1 CTR-AES128.Encrypt",
        "F.5.2 CTR-AES128.Decrypt",
        "F.5.3 CTR-AES192.Encrypt",
        "F.5.4 CTR-AES192.Decrypt",
        "F.5.5 CTR-AES256.Encrypt",
        "F.5.6 CTR-AES256.Decrypt",
    ]
    f51 = NIST_CTR_VECTORS[0]
    assert f51.key.hex() == "2b7e151628aed2a6abf7158809cf4f3c"
    assert f51.output[:16].hex() == "874d6191b620e3261bef6864990db6ce"
    assert f51.output[-16:].hex() == "1e031dda2fbe03d1792170a0f3009cee"
    assert NIST_CTR_VECTORS[4].output[-16:].hex() == "dfc9c58db67aada613c2dd08457941a6"
    for encrypt, decrypt in zip(NIST_CTR_VECTORS[::2], NIST_CTR_VECTORS[1::2], strict=True):
        assert encrypt.input == decrypt.output == NIST_PLAINTEXT
        assert encrypt.output == decrypt.input
        assert encrypt.key == decrypt.key and encrypt.counter == decrypt.counter == NIST_COUNTER
    for vector in NIST_CTR_VECTORS:
        # the independent ECB-of-counters reference agrees with every vector
        assert ctr(vector.key, vector.counter, vector.input) == vector.output
        assert len(vector.input) == 64


def test_openssl_only_passes() -> None:
    report = run_selftest(kernel=False, files=False)
    assert report.ok
    assert len(report.rows) == 28
    assert {row.backend for row in report.rows} == {"openssl"}
    assert {row.feed for row in report.rows} == {"whole", "pieces 1/15/17"}
    assert all(row.status == "ok" and row.result == "ok" for row in report.rows)
    table = format_table(report)
    lines = table.splitlines()
    assert lines[0].split() == ["backend", "implementation", "vector", "feed", "result"]
    assert len(lines) == 30
    assert lines[-1] == "selftest passed (28 ok, 0 failed, 0 skipped)"
    data = report.to_json()
    assert json.loads(json.dumps(data)) == data
    assert data["ok"] is True and len(data["rows"]) == 28
    assert data["rows"][0]["vector"] == "F.5.1 CTR-AES128.Encrypt"


def test_unavailable_kernel_is_skipped_not_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable() -> list[object]:
        raise BackendUnavailable("this kernel has no AF_ALG sockets (simulated)")

    monkeypatch.setattr(selftest, "ctr_aes_drivers", unavailable)
    report = run_selftest(files=False)
    assert report.ok
    [skipped] = [row for row in report.rows if row.backend == "kernel"]
    assert skipped.status == "skipped"
    assert skipped.result == "skipped: this kernel has no AF_ALG sockets (simulated)"
    assert not skipped.failed
    assert format_table(report).endswith("(28 ok, 0 failed, 1 skipped)")


class _WrongStream:
    """A CTR stream that flips one bit of byte 40 of its output."""

    description = "wrong"

    def __init__(self, key: bytes, iv: bytes) -> None:
        self.inner = OpenSSLStream(key, iv)
        self.offset = 0

    def update(self, data: bytes) -> bytes:
        out = bytearray(self.inner.update(data))
        if self.offset <= 40 < self.offset + len(out):
            out[40 - self.offset] ^= 1
        self.offset += len(out)
        return bytes(out)

    def finalize(self) -> bytes:
        return self.inner.finalize()

    def close(self) -> None:
        self.inner.close()


def test_a_wrong_answer_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selftest, "OpenSSLStream", _WrongStream)
    report = run_selftest(kernel=False)
    assert not report.ok
    rows = [row for row in report.rows if row.failed]
    assert len(rows) == 28
    assert {row.status for row in rows} == {"FAIL"}
    assert rows[0].result == "FAIL: wrong output from byte 40 (64 of 64 bytes returned)"
    assert report.to_json()["ok"] is False
    assert format_table(report).splitlines()[-1].startswith("selftest FAILED: 28 check(s) wrong")


class _ShortStream(_WrongStream):
    def finalize(self) -> bytes:
        self.inner.finalize()
        return b""

    def update(self, data: bytes) -> bytes:
        return self.inner.update(data)[: max(0, 60 - self.offset)]


def test_missing_output_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selftest, "OpenSSLStream", _ShortStream)
    row = run_selftest(kernel=False).rows[0]
    assert row.result == "FAIL: wrong output from byte 60 (60 of 64 bytes returned)"


def test_an_error_from_an_available_backend_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    class Driver:
        driver = "ctr(aes-simulated)"

    def broken(key: bytes, iv: bytes, options: object) -> object:
        raise BackendUnavailable("the kernel crypto socket failed while sending input: boom")

    monkeypatch.setattr(selftest, "ctr_aes_drivers", lambda: [Driver()])
    monkeypatch.setattr(selftest, "KernelStream", broken)
    report = run_selftest(openssl=False, files=False)
    assert not report.ok
    assert len(report.rows) == 14 * 4
    assert {row.implementation for row in report.rows} == {"ctr(aes-simulated)"}
    assert {row.feed for row in report.rows} == {
        "whole",
        "pieces 1/15/17",
        "pipe (splice)",
        "file (sendfile)",
    }
    assert {row.result for row in report.rows} == {
        "error: the kernel crypto socket failed while sending input: boom"
    }


@pytest.mark.kernel
def test_selftest_in_the_kernel_covers_every_driver() -> None:
    report = run_selftest()
    assert report.ok, format_table(report)
    drivers = [alg.driver for alg in implementations(read_proc_crypto(), "ctr(aes)", "skcipher")]
    assert drivers
    kernel_rows = [
        row for row in report.rows if row.backend == "kernel" and row.implementation != "kstream v1"
    ]
    file_rows = [
        row for row in report.rows if row.backend == "kernel" and row.implementation == "kstream v1"
    ]
    assert len(file_rows) == 14 and all(row.status == "ok" for row in file_rows)
    assert {row.implementation for row in kernel_rows} == set(drivers)
    if drivers_by_name_refused():
        # Linux 7.3's default binds no driver by name: the pick through ctr(aes), one row
        # saying why for each of the others.
        pick = drivers[0]
        others = [row for row in kernel_rows if row.implementation != pick]
        assert {(row.implementation, row.status) for row in others} == {
            (d, "skipped") for d in drivers[1:]
        }
        assert all("af_alg_restrict=1" in row.detail for row in others)
        kernel_rows = [row for row in kernel_rows if row.implementation == pick]
        drivers = [pick]
    assert len(kernel_rows) == len(drivers) * 14 * 4
    assert {row.vector for row in kernel_rows if row.vector.startswith("carry")} == {
        f"carry 2^{b} AES{bits}" for b in (32, 64, 96, 128) for bits in (128, 256)
    }
    assert all(row.status == "ok" for row in kernel_rows)


def test_report_ok_semantics() -> None:
    rows = run_selftest(kernel=False).rows
    skipped = selftest.SelftestRow("kernel", "-", "all", "-", "skipped", "why")
    error = selftest.SelftestRow("kernel", "x", "v", "f", "error", "boom")
    assert SelftestReport((*rows, skipped)).ok
    assert not SelftestReport((*rows, error)).ok
    assert SelftestReport(()).ok


def test_carry_vectors_cross_each_boundary_and_match_the_reference() -> None:
    assert [v.label for v in CARRY_VECTORS] == [
        f"carry 2^{b} AES{bits}" for bits in (128, 256) for b in (32, 64, 96, 128)
    ]
    for vector in CARRY_VECTORS:
        boundary = int(vector.section.removeprefix("carry 2^"))
        start = int.from_bytes(vector.counter, "big")
        blocks = -(-len(vector.input) // 16)
        assert len(vector.input) % 16  # ends with a partial block
        assert start % (1 << boundary) > (1 << boundary) - blocks  # crosses inside the run
        assert ctr(vector.key, vector.counter, vector.input) == vector.output


class _NarrowCounter:
    """CTR whose counter is only the low ``width`` bits (as buggy hardware drivers had)."""

    description = "narrow"
    width = 32

    def __init__(self, key: bytes, iv: bytes) -> None:
        self.key, self.iv, self.data = key, iv, bytearray()

    def update(self, data: bytes) -> bytes:
        self.data += data
        return b""

    def finalize(self) -> bytes:
        start = int.from_bytes(self.iv, "big")
        mask = (1 << self.width) - 1
        out = bytearray()
        for i in range(0, len(self.data), 16):
            counter = (start & ~mask) | ((start + i // 16) & mask)
            block = bytes(self.data[i : i + 16])
            out += ctr(self.key, counter.to_bytes(16, "big"), block)
        return bytes(out)

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("width", "wrong"), [(32, {32, 64, 96, 128}), (64, {64, 96, 128}), (96, {96, 128})]
)
def test_a_narrow_counter_fails_exactly_the_carry_vectors_it_gets_wrong(
    monkeypatch: pytest.MonkeyPatch, width: int, wrong: set[int]
) -> None:
    narrow = type("Narrow", (_NarrowCounter,), {"width": width})
    monkeypatch.setattr(selftest, "OpenSSLStream", narrow)
    report = run_selftest(kernel=False)
    failed = {row.vector for row in report.rows if row.failed}
    assert failed == {f"carry 2^{b} AES{bits}" for b in wrong for bits in (128, 256)}
    assert not report.ok


# --- the file rows: the paths users run -----------------------------------------------------


def test_selftest_runs_files_through_every_driver_each_way() -> None:
    rows = [row for row in run_selftest(kernel=False).rows if row.implementation == "kstream v1"]
    assert {row.feed for row in rows} == {
        f"{driver}, {way}"
        for driver in ("small-file path", "parallel ranges", "fd stream (pipe)", "async iterable")
        for way in ("encrypt", "decrypt")
    }
    assert {row.vector for row in rows} == {"small file", "3 segments and a bit"}
    assert all(row.status == "ok" for row in rows), [r.result for r in rows if r.failed]


@pytest.mark.parametrize("how", ["refuses overlap", "wrong output"])
def test_a_broken_cipher_call_in_the_codec_fails_selftest(
    monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """As cryptography 51 broke kstream: the vectors still pass, the file rows must not."""
    real = OpenSSLStream.update_into

    def broken(self: OpenSSLStream, data: Any, out: Any) -> int:
        if how == "refuses overlap":
            raise ValueError("data and buf must not overlap")
        n = real(self, data, out)
        out[0] ^= 1
        return n

    monkeypatch.setattr(OpenSSLStream, "update_into", broken)
    report = run_selftest(kernel=False)
    assert not report.ok
    failed = [row for row in report.rows if row.failed]
    assert failed and all(row.implementation == "kstream v1" for row in failed)
    assert "selftest FAILED" in format_table(report)


def test_the_reference_opener_reads_the_specification_s_files() -> None:
    """selftest_paths.reference_open against tests/reference.seal, both from the spec."""
    from reference import seal

    from kstream.selftest_paths import reference_open

    key, plain = bytes(range(32)), bytes(range(256)) * 300
    header = b"KSTREAM\x1a" + bytes([1, 0, 0, 0]) + (1024).to_bytes(4, "big") + bytes(range(16))
    blob = seal(key, header, plain, 1024)
    assert reference_open(key, blob) == plain
    with pytest.raises(ValueError, match="tag does not verify"):
        reference_open(key, blob[:100] + bytes([blob[100] ^ 1]) + blob[101:])
    with pytest.raises(ValueError, match="after the last segment"):
        reference_open(key, blob + b"x")
