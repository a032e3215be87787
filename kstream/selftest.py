"""``kstream selftest``: known-answer tests of every AES-CTR implementation kstream can use.

The NIST SP 800-38A CTR vectors (F.5.1-F.5.6) run on OpenSSL and on each ``ctr(aes)`` driver
the kernel lists, each fed whole and in odd-sized pieces (1, 15, 17 bytes), and for the
kernel also through a pipe (``splice``) and a memory file (``sendfile``), because the
streaming paths (partial blocks held back, requests chained) are where a CTR implementation
goes wrong, not the single-shot one. An unavailable kernel backend is reported as skipped,
not as a failure: only a wrong answer, or an error from a backend that is there, fails.

Counter-carry vectors follow: counters that cross the 2^32, 2^64 and 2^96 boundaries and
wrap at 2^128, for AES-128 and AES-256, fed the same ways. Their expected output is
OpenSSL's AES-ECB of the explicit counter blocks (built here with Python integers), so it
shares no counter logic with any CTR implementation under test: a driver with a 32- or
64-bit counter (hardware drivers have shipped such bugs) writes files that authenticate on
its own machine and decrypt to garbage elsewhere.

Last, whole kstream files go through the drivers users run (the small-file path, parallel
ranges, the fd stream, the async iterable), each way (:mod:`kstream.selftest_paths`): a
cipher that passes the vectors can still be called wrongly by the codec.

The vectors live here, once; the tests import them from this module.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from kstream.backends.base import CipherOptions, CipherStream, FdCipherStream
from kstream.backends.kernel import KernelStream, ctr_aes_drivers
from kstream.backends.kernel.sockets import drivers_by_name_refused
from kstream.backends.openssl import OpenSSLStream
from kstream.errors import BackendUnavailable

NIST_COUNTER = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
NIST_PLAINTEXT = bytes.fromhex(
    "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"
)
_KEYS = {
    128: bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c"),
    192: bytes.fromhex("8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b"),
    256: bytes.fromhex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4"),
}
_CIPHERTEXTS = {
    128: bytes.fromhex(
        "874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff"
        "5ae4df3edbd5d35e5b4f09020db03eab1e031dda2fbe03d1792170a0f3009cee"
    ),
    192: bytes.fromhex(
        "1abc932417521ca24f2b0459fe7e6e0b090339ec0aa6faefd5ccc2c6f4ce8e94"
        "1e36b26bd1ebc670d1bd1d665620abf74f78a7f6d29809585a97daec58c6b050"
    ),
    256: bytes.fromhex(
        "601ec313775789a5b7a7f504bbf3d228f443e3ca4d62b59aca84e990cacaf5c5"
        "2b0930daa23de94ce87017ba2d84988ddfc9c58db67aada613c2dd08457941a6"
    ),
}


@dataclass(frozen=True)
class CtrVector:
    """One NIST SP 800-38A CTR example: ``output`` is AES-CTR of ``input``."""

    section: str
    title: str
    key: bytes
    counter: bytes
    input: bytes
    output: bytes

    @property
    def label(self) -> str:
        return f"{self.section} {self.title}"


def _vectors() -> tuple[CtrVector, ...]:
    vectors = []
    for index, bits in enumerate((128, 192, 256)):
        key, ciphertext = _KEYS[bits], _CIPHERTEXTS[bits]
        enc, dec = f"F.5.{2 * index + 1}", f"F.5.{2 * index + 2}"
        vectors.append(
            CtrVector(enc, f"CTR-AES{bits}.Encrypt", key, NIST_COUNTER, NIST_PLAINTEXT, ciphertext)
        )
        vectors.append(
            CtrVector(dec, f"CTR-AES{bits}.Decrypt", key, NIST_COUNTER, ciphertext, NIST_PLAINTEXT)
        )
    return tuple(vectors)


#: NIST SP 800-38A F.5.1-F.5.6, in order (encrypt and decrypt for 128, 192, 256-bit keys).
NIST_CTR_VECTORS: tuple[CtrVector, ...] = _vectors()

#: Where each carry vector's counter starts: three blocks before the boundary it crosses.
CARRY_BOUNDARIES = (32, 64, 96, 128)
#: Six blocks and five bytes: the crossing sits inside the run, the end is a partial block.
CARRY_LENGTH = 6 * 16 + 5


def _ecb_ctr(key: bytes, counter: bytes, data: bytes) -> bytes:
    """AES-CTR computed from its definition: OpenSSL's AES-ECB of explicit counter blocks."""
    start = int.from_bytes(counter, "big")
    blocks = -(-len(data) // 16)
    counters = b"".join(((start + i) % (1 << 128)).to_bytes(16, "big") for i in range(blocks))
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305 (CTR by hand)
    stream = encryptor.update(counters) + encryptor.finalize()
    return bytes(a ^ b for a, b in zip(data, stream, strict=False))


def _carry_vectors() -> tuple[CtrVector, ...]:
    vectors = []
    plaintext = (NIST_PLAINTEXT * 2)[:CARRY_LENGTH]
    for bits in (128, 256):
        for boundary in CARRY_BOUNDARIES:
            low = (1 << boundary) - 3  # ...fffd: blocks fd, fe, ff, then the carry
            high = int.from_bytes(NIST_COUNTER, "big") >> boundary << boundary
            counter = ((high | low) % (1 << 128)).to_bytes(16, "big")
            vectors.append(
                CtrVector(
                    f"carry 2^{boundary}",
                    f"AES{bits}",
                    _KEYS[bits],
                    counter,
                    plaintext,
                    _ecb_ctr(_KEYS[bits], counter, plaintext),
                )
            )
    return tuple(vectors)


#: Counter-carry vectors (2^32, 2^64, 2^96 and the 2^128 wrap; AES-128 and AES-256).
CARRY_VECTORS: tuple[CtrVector, ...] = _carry_vectors()

#: Piece sizes the "pieces" feed cycles through: below, just under and just over a block.
PIECES = (1, 15, 17)

Status = Literal["ok", "FAIL", "error", "skipped"]


@dataclass(frozen=True)
class SelftestRow:
    """One known-answer check: a backend's implementation, a vector, and how it was fed."""

    backend: str
    implementation: str
    vector: str
    feed: str
    status: Status
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status in ("FAIL", "error")

    @property
    def result(self) -> str:
        """``ok``, ``skipped: <reason>``, ``FAIL: <what>`` or ``error: <message>``."""
        return f"{self.status}: {self.detail}" if self.detail else self.status

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "implementation": self.implementation,
            "vector": self.vector,
            "feed": self.feed,
            "status": self.status,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class SelftestReport:
    rows: tuple[SelftestRow, ...]

    @property
    def ok(self) -> bool:
        """True when no row failed (skipped rows are fine)."""
        return not any(row.failed for row in self.rows)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "rows": [row.to_json() for row in self.rows]}


def pieces_of(data: bytes, sizes: Sequence[int]) -> Iterator[bytes]:
    """``data`` cut into pieces whose sizes cycle through ``sizes``."""
    pos = index = 0
    while pos < len(data):
        size = sizes[index % len(sizes)]
        yield data[pos : pos + size]
        pos += size
        index += 1


def _feed_whole(stream: CipherStream, data: bytes) -> bytes:
    return stream.update(data) + stream.finalize()


def _feed_pieces(stream: CipherStream, data: bytes) -> bytes:
    return b"".join(stream.update(piece) for piece in pieces_of(data, PIECES)) + stream.finalize()


def _drain_fd(stream: FdCipherStream, fd: int) -> bytes:
    out = []
    while True:
        chunk, consumed = stream.update_from_fd(fd, 17)
        out.append(chunk)
        if consumed == 0:
            return b"".join(out) + stream.finalize()


def _feed_pipe(stream: FdCipherStream, data: bytes) -> bytes:
    """Through a pipe (``splice``); 64 bytes always fit in a pipe's buffer."""
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, data)
        os.close(write_fd)
        write_fd = -1
        return _drain_fd(stream, read_fd)
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)


def _feed_file(stream: FdCipherStream, data: bytes) -> bytes:
    """From a memory-backed regular file (``sendfile``); nothing touches the disk."""
    fd = os.memfd_create("kstream-selftest", os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
        return _drain_fd(stream, fd)
    finally:
        os.close(fd)


Feed = Callable[[Any, bytes], bytes]

_COMMON_FEEDS: tuple[tuple[str, Feed, CipherOptions], ...] = (
    ("whole", _feed_whole, CipherOptions()),
    ("pieces 1/15/17", _feed_pieces, CipherOptions()),
)
_KERNEL_FEEDS: tuple[tuple[str, Feed, CipherOptions], ...] = (
    ("pipe (splice)", _feed_pipe, CipherOptions(transfer="splice")),
    ("file (sendfile)", _feed_file, CipherOptions(transfer="sendfile")),
)


def _check(
    backend: str,
    implementation: str,
    open_stream: Callable[[CtrVector, CipherOptions], CipherStream],
    feeds: Sequence[tuple[str, Feed, CipherOptions]],
) -> list[SelftestRow]:
    rows = []
    for vector in NIST_CTR_VECTORS + CARRY_VECTORS:
        for feed_name, feed, options in feeds:
            where = (backend, implementation, vector.label, feed_name)
            try:
                stream = open_stream(vector, options)
                try:
                    got = feed(stream, vector.input)
                finally:
                    stream.close()
            except Exception as exc:  # any error from an available backend is a failure
                rows.append(SelftestRow(*where, "error", str(exc) or type(exc).__name__))
                continue
            rows.append(SelftestRow(*where, *_compare(got, vector.output)))
    return rows


def _compare(got: bytes, expected: bytes) -> tuple[Status, str]:
    if got == expected:
        return "ok", ""
    first = next(
        (i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
        min(len(got), len(expected)),
    )
    return "FAIL", f"wrong output from byte {first} ({len(got)} of {len(expected)} bytes returned)"


def _openssl_rows() -> list[SelftestRow]:
    def open_stream(vector: CtrVector, options: CipherOptions) -> CipherStream:
        return OpenSSLStream(vector.key, vector.counter)

    probe = OpenSSLStream(_KEYS[128], NIST_COUNTER)
    implementation = probe.description
    probe.close()
    return _check("openssl", implementation, open_stream, _COMMON_FEEDS)


def _kernel_rows() -> list[SelftestRow]:
    try:
        drivers = ctr_aes_drivers()
    except BackendUnavailable as exc:
        return [SelftestRow("kernel", "-", "all", "-", "skipped", str(exc))]
    if not drivers:
        return [
            SelftestRow(
                "kernel", "-", "all", "-", "skipped", "no usable ctr(aes) listed in /proc/crypto"
            )
        ]
    rows = []
    # Under af_alg_restrict=1 no driver binds by its own name, not even for root: the kernel's
    # pick (listed first) is reached through ctr(aes), and the others cannot be reached.
    by_name = not drivers_by_name_refused()
    for n, driver in enumerate(drivers):
        if not by_name and n > 0:
            rows.append(SelftestRow("kernel", driver.driver, "all", "-", "skipped", _BY_NAME))
            continue

        def open_stream(
            vector: CtrVector,
            options: CipherOptions,
            driver: str | None = driver.driver if by_name else None,
        ) -> CipherStream:
            return KernelStream(
                vector.key, vector.counter, CipherOptions(driver=driver, transfer=options.transfer)
            )

        rows += _check("kernel", driver.driver, open_stream, _COMMON_FEEDS + _KERNEL_FEEDS)
    return rows


_BY_NAME = (
    "crypto.af_alg_restrict=1 binds no driver by name, only the kernel's pick through "
    "ctr(aes); set it to 0 to test this one"
)


def run_selftest(
    *, kernel: bool = True, openssl: bool = True, files: bool = True
) -> SelftestReport:
    """Run the NIST CTR and the carry vectors on OpenSSL and on every kernel ``ctr(aes)``
    driver, then (``files``) whole files through each driver that ``encrypt`` and
    ``decrypt`` use, with each backend that is there."""
    from kstream.selftest_paths import path_rows

    kernel_rows = _kernel_rows() if kernel else []
    rows = (_openssl_rows() if openssl else []) + kernel_rows
    there = {
        "openssl": openssl,
        # usable if any driver ran (under af_alg_restrict=1 only the pick does)
        "kernel": any(r.status != "skipped" for r in kernel_rows),
    }
    for backend in (b for b, usable in there.items() if usable and files):
        rows += [SelftestRow(backend, "kstream v1", *row) for row in path_rows(backend)]
    return SelftestReport(tuple(rows))


def format_table(report: SelftestReport) -> str:
    """The report as an aligned text table, with a one-line verdict at the end."""
    header = ("backend", "implementation", "vector", "feed", "result")
    table = [header] + [
        (row.backend, row.implementation, row.vector, row.feed, row.result) for row in report.rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header) - 1)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False))
        + "  "
        + line[-1]
        for line in table
    ]
    failed = sum(row.failed for row in report.rows)
    passed = sum(row.status == "ok" for row in report.rows)
    skipped = sum(row.status == "skipped" for row in report.rows)
    verdict = "selftest passed" if report.ok else f"selftest FAILED: {failed} check(s) wrong"
    lines.append(f"{verdict} ({passed} ok, {failed} failed, {skipped} skipped)")
    return "\n".join(lines)


__all__ = [
    "CARRY_VECTORS",
    "NIST_COUNTER",
    "NIST_CTR_VECTORS",
    "NIST_PLAINTEXT",
    "PIECES",
    "CtrVector",
    "SelftestReport",
    "SelftestRow",
    "format_table",
    "run_selftest",
]
