"""``kstream bench`` in memory (the default mode): one table cell per backend, kernel driver,
transfer, key size, chunk size and operation.

See :mod:`kstream.bench` for what is measured and why; this module does the measuring. It is
imported only when a benchmark runs, never to build the command-line parser.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass, field
from typing import Any

from kstream.backends.base import CipherOptions, CipherStream, FdCipherStream, Transfer
from kstream.backends.kernel import KernelStream, ctr_aes_drivers, generic_warning
from kstream.backends.kernel.sockets import drivers_by_name_refused
from kstream.backends.openssl import OpenSSLStream
from kstream.bench.machine import (
    UML_WARNING,
    describe_machine,
    in_uml,
    kernel_status,
    machine_info,
    openssl_version,
)
from kstream.bench.units import (
    BACKENDS,
    DEFAULT_CHUNKS,
    DEFAULT_REPEAT,
    DEFAULT_SECONDS,
    KERNEL_TRANSFERS,
    KEY_BITS,
    MB,
    MIN_SECONDS,
    OPENSSL_TRANSFERS,
    OPS,
    TOTAL_SECONDS,
    format_size,
    median,
)
from kstream.errors import KstreamError, UsageError


@dataclass(frozen=True)
class Target:
    """One implementation and way of feeding it: a row group of the table."""

    backend: str
    driver: str
    transfer: str
    #: Set when this implementation's numbers say little about real machines.
    warning: str | None = None
    #: The kernel's pick, bound as ``ctr(aes)``: af_alg_restrict=1 binds no driver by name.
    as_pick: bool = False


@dataclass(frozen=True)
class MemoryRow:
    """The medians of one cell: target x key size x chunk size x operation."""

    backend: str
    driver: str
    transfer: str
    key_bits: int
    chunk: int
    op: str
    mb_s: float
    ops_s: float
    #: MB/s of each measured run (not the warm-up), for judging the spread.
    runs_mb_s: list[float] = field(default_factory=list)
    ops: int = 0
    #: Why this implementation's numbers say little about real machines, if they do not.
    warning: str | None = None


@dataclass
class MemoryReport:
    machine: dict[str, Any]
    settings: dict[str, Any]
    backends: list[dict[str, Any]]
    warnings: list[str]
    rows: list[MemoryRow]

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": "memory",
            "machine": self.machine,
            "settings": self.settings,
            "backends": self.backends,
            "warnings": self.warnings,
            "rows": [asdict(row) for row in self.rows],
        }


def open_kernel_stream(key: bytes, iv: bytes, options: CipherOptions) -> CipherStream:
    """A kernel stream on the driver and transfer in ``options``.

    A module-level function (like :func:`kernel_drivers`, and the ``kernel_status`` imported
    here) so that tests can put a simulated kernel in: the development hosts have no AF_ALG.
    """
    return KernelStream(key, iv, options)


def kernel_drivers() -> list[str]:
    """Every ``ctr(aes)`` driver the kernel lists, its own pick first."""
    names = [alg.driver for alg in ctr_aes_drivers()]
    return names or ["ctr(aes)"]


#: Said when af_alg_restrict=1 leaves only the kernel's pick to measure.
PICK_ONLY = (
    "crypto.af_alg_restrict=1 binds no driver by name: only the kernel's pick {} is measured "
    "(through ctr(aes)); set it to 0 to measure the others ({})"
)


def _targets(
    backends: Sequence[str], drivers: Sequence[str], transfers: Sequence[str]
) -> tuple[list[Target], list[dict[str, Any]], list[str]]:
    """What to measure, the availability of each backend, and warnings so far."""
    targets: list[Target] = []
    availability: list[dict[str, Any]] = []
    warnings: list[str] = []
    if "openssl" in backends:
        availability.append({"name": "openssl", "available": True, "reason": openssl_version()})
        for transfer in OPENSSL_TRANSFERS:
            if not transfers or transfer in transfers:
                targets.append(Target("openssl", openssl_version(), transfer))
    if "kernel" in backends:
        ok, reason = kernel_status()
        availability.append({"name": "kernel", "available": ok, "reason": reason})
        if ok:
            listed = kernel_drivers() if not drivers else list(drivers)
            pick_only = not drivers and drivers_by_name_refused()
            if pick_only and len(listed) > 1:
                warnings.append(PICK_ONLY.format(listed[0], ", ".join(listed[1:])))
                listed = listed[:1]
            for driver in listed:
                warning = generic_warning(driver)
                if warning is not None:
                    warnings.append(
                        f"kernel driver {driver}: {warning}; its numbers are not "
                        "representative of a kernel with an accelerated ctr(aes) driver"
                    )
                for transfer in KERNEL_TRANSFERS:
                    if not transfers or transfer in transfers:
                        targets.append(Target("kernel", driver, transfer, warning, pick_only))
    if in_uml():
        warnings.append(UML_WARNING)
    return targets, availability, warnings


def _open(target: Target, key: bytes, iv: bytes) -> CipherStream:
    if target.backend == "openssl":
        return OpenSSLStream(key, iv)
    transfer: Transfer = "auto"
    if target.transfer in KERNEL_TRANSFERS:
        transfer = target.transfer
    driver = None if target.as_pick else target.driver
    return open_kernel_stream(key, iv, CipherOptions(driver=driver, transfer=transfer))


@contextmanager
def _feeder(target: Target, stream: CipherStream, data: bytes) -> Iterator[Callable[[], None]]:
    """A function that pushes ``data`` once through ``stream`` the way ``target`` says.

    Sets up (and afterwards closes) the pipe or memory file the kernel transfers read from.
    """
    if target.transfer in ("update", "sendmsg"):

        def update() -> None:
            stream.update(data)

        yield update
    elif target.transfer == "update_into":
        if not isinstance(stream, OpenSSLStream):
            raise UsageError("update_into is an OpenSSL transfer")
        out = bytearray(len(data) + 15)  # OpenSSL wants 15 spare bytes, CTR never uses them

        def update_into() -> None:
            stream.update_into(data, out)  # into a buffer of its own: never overlapping

        yield update_into
    elif target.transfer == "splice":
        with _pipe(len(data)) as (rfd, wfd, capacity):
            fd_stream = _fd_stream(stream)
            yield lambda: _splice_once(fd_stream, rfd, wfd, data, capacity)
    elif target.transfer == "sendfile":
        with _memory_file(data) as fd:
            fd_stream = _fd_stream(stream)
            yield lambda: _sendfile_once(fd_stream, fd, len(data))
    else:
        raise UsageError(f"unknown transfer '{target.transfer}'")


def _fd_stream(stream: CipherStream) -> FdCipherStream:
    if not isinstance(stream, FdCipherStream):
        raise UsageError(f"{stream.description} cannot read from a file descriptor")
    return stream


@contextmanager
def _pipe(want: int) -> Iterator[tuple[int, int, int]]:
    """A non-blocking pipe, enlarged to hold ``want`` bytes where the system allows.

    Non-blocking on both ends, so that a mistake in the bookkeeping below fails instead of
    hanging: this process is both the writer and (through the kernel stream) the reader.
    """
    rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        # Above /proc/sys/fs/pipe-max-size this fails: then fill and drain in several steps.
        with suppress(OSError):
            fcntl.fcntl(wfd, fcntl.F_SETPIPE_SZ, max(want, 4096))
        capacity = fcntl.fcntl(wfd, fcntl.F_GETPIPE_SZ)
        yield rfd, wfd, capacity
    finally:
        os.close(rfd)
        os.close(wfd)


def _splice_once(stream: FdCipherStream, rfd: int, wfd: int, data: bytes, capacity: int) -> None:
    """Write ``data`` into the pipe and let the stream splice it out, as a filter would.

    The write into the pipe is timed too: it is the copy a producer process pays for
    before ``splice`` can move the pages on.
    """
    view = memoryview(data)
    total = len(data)
    written = fed = 0
    while fed < total:
        room = capacity - (written - fed)
        if written < total and room > 0:
            with suppress(BlockingIOError):
                written += os.write(wfd, view[written : written + room])
        pending = written - fed
        if pending:
            _, consumed = stream.update_from_fd(rfd, pending)
            if consumed == 0:
                raise KstreamError("splice moved nothing out of a non-empty pipe")
            fed += consumed


@contextmanager
def _memory_file(data: bytes) -> Iterator[int]:
    """A regular file holding ``data`` that never touches a disk (memfd, else a temp file)."""
    try:
        fd = os.memfd_create("kstream-bench", os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        fd, path = tempfile.mkstemp(prefix="kstream-bench-")
        os.unlink(path)
    try:
        view = memoryview(data)
        done = 0
        while done < len(data):
            done += os.write(fd, view[done:])
        yield fd
    finally:
        os.close(fd)


def _sendfile_once(stream: FdCipherStream, fd: int, size: int) -> None:
    os.lseek(fd, 0, os.SEEK_SET)
    fed = 0
    while fed < size:
        _, consumed = stream.update_from_fd(fd, size - fed)
        if consumed == 0:
            raise KstreamError("sendfile moved nothing from a non-empty file")
        fed += consumed


def _timed(op: Callable[[], None], budget: float) -> tuple[int, float]:
    """Run ``op`` until ``budget`` seconds have passed (at least once): (ops, seconds)."""
    count = 0
    start = time.perf_counter()
    while True:
        op()
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= budget:
            return count, elapsed


def measure_cell(
    target: Target, key: bytes, iv: bytes, data: bytes, seconds: float, repeat: int
) -> tuple[list[float], list[float], int]:
    """MB/s and ops/s of each of ``repeat`` runs after one warm-up run, and the op count.

    Each run gets a fresh stream (opening it is not timed) and ``seconds / (repeat + 1)``
    of the cell's budget, so a whole cell, warm-up included, costs about ``seconds``.
    """
    budget = seconds / (repeat + 1)
    mb_s: list[float] = []
    ops_s: list[float] = []
    total_ops = 0
    for run in range(repeat + 1):
        with ExitStack() as stack:
            stream = _open(target, key, iv)
            stack.callback(stream.close)
            feed = stack.enter_context(_feeder(target, stream, data))
            count, elapsed = _timed(feed, budget)
        if run == 0:
            continue  # warm-up: caches, CPU frequency, the kernel instantiating templates
        ops_s.append(count / elapsed)
        mb_s.append(count * len(data) / elapsed / MB)
        total_ops += count
    return mb_s, ops_s, total_ops


def run_memory(
    *,
    backends: Sequence[str] = BACKENDS,
    drivers: Sequence[str] = (),
    transfers: Sequence[str] = (),
    key_bits: Sequence[int] = KEY_BITS,
    chunks: Sequence[int] = DEFAULT_CHUNKS,
    ops: Sequence[str] = OPS,
    seconds: float | None = None,
    repeat: int = DEFAULT_REPEAT,
    progress: Callable[[int, int, str], None] | None = None,
) -> MemoryReport:
    """Measure every selected cell; see the module docstring for what one op is.

    ``decrypt`` is the same AES-CTR operation as ``encrypt`` (both backends run the
    keystream XOR); it is fed real ciphertext and measured separately anyway, as
    kcapi-speed does, and the difference between the two rows shows the noise level.
    """
    targets, availability, warnings = _targets(backends, drivers, transfers)
    iv = os.urandom(16)
    keys = {bits: os.urandom(bits // 8) for bits in key_bits}
    plain = {chunk: os.urandom(chunk) for chunk in chunks}
    rows: list[MemoryRow] = []
    cells = [
        (target, bits, chunk, op)
        for target in targets
        for bits in key_bits
        for chunk in chunks
        for op in ops
    ]
    if seconds is None:
        seconds = max(MIN_SECONDS, min(DEFAULT_SECONDS, TOTAL_SECONDS / max(len(cells), 1)))
    failed: set[tuple[str, str]] = set()
    for index, (target, bits, chunk, op) in enumerate(cells):
        if (target.backend, target.driver) in failed:
            continue
        label = f"{target.backend} {target.driver} {target.transfer} {bits} {format_size(chunk)}"
        if progress is not None:
            progress(index, len(cells), label)
        data = plain[chunk]
        if op == "decrypt":
            data = OpenSSLStream(keys[bits], iv).update(data)  # real ciphertext
        try:
            mb_s, ops_s, count = measure_cell(target, keys[bits], iv, data, seconds, repeat)
        except KstreamError as exc:
            # A driver named with --driver that the kernel refuses, or one that fails: say
            # so once and go on with the others instead of losing the whole run.
            failed.add((target.backend, target.driver))
            warnings.append(f"{target.backend} {target.driver}: not measured: {exc}")
            continue
        rows.append(
            MemoryRow(
                backend=target.backend,
                driver=target.driver,
                transfer=target.transfer,
                key_bits=bits,
                chunk=chunk,
                op=op,
                mb_s=median(mb_s),
                ops_s=median(ops_s),
                runs_mb_s=[round(value, 3) for value in mb_s],
                ops=count,
                warning=target.warning,
            )
        )
    settings = {
        "seconds_per_cell": seconds,
        "repeat": repeat,
        "warmup_runs": 1,
        "key_bits": list(key_bits),
        "chunks": list(chunks),
        "ops": list(ops),
        "mb": "10^6 bytes",
        "op": "one chunk through one open cipher stream",
    }
    return MemoryReport(machine_info(), settings, availability, warnings, rows)


def _mb(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def format_memory_table(report: MemoryReport) -> str:
    """The report as an aligned table, with the warnings under it where they are seen."""
    settings = report.settings
    lines = [
        "kstream bench: AES-CTR in memory",
        f"machine: {describe_machine(report.machine)}",
        f"medians of {settings['repeat']} run{'' if settings['repeat'] == 1 else 's'} after "
        "1 warm-up run, about "
        f"{settings['seconds_per_cell']:g} s per cell; one op = one chunk through an open "
        "cipher stream; MB = 10^6 bytes",
    ]
    for backend in report.backends:
        if not backend["available"]:
            lines.append(
                f"{backend['name']}: not measured, not available here: {backend['reason']}"
            )
    lines.append("")
    header = ("backend", "driver", "transfer", "key", "chunk", "op", "MB/s", "ops/s")
    table: list[tuple[str, ...]] = [header]
    for row in report.rows:
        driver = row.driver + (" (!)" if row.warning else "")
        table.append(
            (
                row.backend,
                driver,
                row.transfer,
                str(row.key_bits),
                format_size(row.chunk),
                row.op,
                _mb(row.mb_s),
                f"{row.ops_s:,.0f}",
            )
        )
    widths = [max(len(cells[i]) for cells in table) for i in range(len(header))]
    right = {3, 4, 6, 7}
    for cells in table:
        lines.append(
            "  ".join(
                cell.rjust(width) if i in right else cell.ljust(width)
                for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
            ).rstrip()
        )
    if not report.rows:
        lines.append("(nothing measured)")
    if report.warnings:
        lines.append("")
        lines += [f"WARNING: {warning}" for warning in report.warnings]
        if any(row.warning for row in report.rows):
            lines.append(
                "(!) marks a generic driver: compare the backends on a real machine "
                "before choosing one"
            )
    return "\n".join(lines)
