"""``kstream bench --files``: whole files through kstream, ``openssl enc`` and ``cp``, side by
side, and the ratios the project's performance goals are stated in.

Why side by side and interleaved: on a shared 2-core machine the speed of everything drifts
by tens of percent within a minute, so absolute numbers from separate runs cannot be compared.
Every round runs each entry once (the order rotates from round to round), each kstream time
is divided by its baseline's time *in the same round*, and the median of those paired ratios
is what a goal is judged on.

What is timed: a fresh process from start to exit (the CLI entries include Python's start-up,
as a user would see it), plus an ``fsync`` of the output, because kstream fsyncs its output
files and ``openssl``/``cp`` do not (free on tmpfs, decisive on a disk). The coroutine API
runs in this process under :func:`kstream.run`, on the same event loop as the command line
(uvloop when installed), and once more under ``asyncio.run`` (the default loop) for
information: a program awaiting per MiB pays the loop's overhead per await. Peak RSS comes
from ``wait4`` of each kstream process itself (not of ``cat`` or of this process).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from kstream.bench import GIB, MB, MIB, format_size
from kstream.benchmem import (
    UML_WARNING,
    describe_machine,
    in_uml,
    kernel_status,
    machine_info,
    median,
)
from kstream.errors import KstreamError, UsageError

KSTREAM = (sys.executable, "-m", "kstream")
#: What the API's stream example reads per step (one await per MiB, as a user would write it).
STREAM_READ = MIB
RSS_GOAL_MIB = 64
#: Goals on tmpfs (CPU-bound); on a disk every time goal is ON_DISK (writeback-bound).
TMPFS_GOALS = {"raw": 0.70, "auth": 0.80, "pipe": 0.85}
ON_DISK = 1.05
API_GOAL = 0.90
MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs", "hugetlbfs"})


class BenchError(KstreamError):
    """A command under test failed or produced wrong output: its numbers would mean nothing."""

    exit_code = 1


@dataclass
class Sample:
    seconds: float
    rss_kib: int | None = None


@dataclass
class Entry:
    """One thing measured each round."""

    id: str
    label: str
    #: (output path, measure peak RSS?) -> the sample.
    run: Callable[[str, bool], Sample]
    backend: str | None = None
    #: The entry whose time this one is divided by, round by round.
    baseline: str | None = None
    #: ``time`` (kstream's time / baseline's: lower is better) or ``throughput`` (baseline's
    #: time / this one's: the API against the CLI, higher is better).
    compare: str = "time"
    #: Checks the output of the first round; returns what is wrong, or None.
    check: Callable[[str], str | None] | None = None
    is_kstream: bool = False
    times: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)


@dataclass
class FilesReport:
    machine: dict[str, Any]
    settings: dict[str, Any]
    entries: list[dict[str, Any]]
    goals: list[dict[str, Any]]
    rss_runs: list[dict[str, Any]]
    warnings: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": "files",
            "machine": self.machine,
            "settings": self.settings,
            "entries": self.entries,
            "goals": self.goals,
            "rss_runs": self.rss_runs,
            "warnings": self.warnings,
        }


# --------------------------------------------------------------------------- files


#: The shared-memory tmpfs: files there are RAM, so a run measures CPU work, not a disk.
SHM = "/dev/shm"  # noqa: S108 - a scratch directory of our own is made inside it


def default_dir() -> str:
    """:data:`SHM` where it exists, else the temp directory."""
    if os.path.isdir(SHM) and os.access(SHM, os.W_OK | os.X_OK):
        return SHM
    return tempfile.gettempdir()


def filesystem_type(path: str) -> str:
    """The type of the filesystem ``path`` is on (``tmpfs``, ``ext4``...), from mountinfo."""
    target = os.path.realpath(path)
    best, fstype = "", "unknown"
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if " - " not in line or len(fields) < 5:
                    continue
                mount = fields[4].replace("\\040", " ")
                inside = target == mount or target.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) >= len(best):
                    best, fstype = mount, line.split(" - ", 1)[1].split()[0]
    except OSError:
        pass
    return fstype


def generate_file(path: str, size: int) -> None:
    """``size`` bytes that do not compress: 1 MiB from the CSPRNG, each copy numbered.

    Cheap (one urandom call) yet no two MiB are equal, so nothing downstream can shortcut.
    """
    block = bytearray(os.urandom(MIB))
    with open(path, "wb") as f:
        index = 0
        written = 0
        while written < size:
            block[:8] = index.to_bytes(8, "big")
            piece = min(MIB, size - written)
            f.write(memoryview(block)[:piece])
            written += piece
            index += 1


def same_content(a: str, b: str) -> bool:
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x = fa.read(4 * MIB)
            if x != fb.read(4 * MIB):
                return False
            if not x:
                return True


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


# --------------------------------------------------------------------------- processes


#: Runs a command and reports *its* peak RSS. Needed because Linux charges a process, as
#: its ``ru_maxrss``, the high-water mark of the memory it had before ``exec``: a command
#: spawned straight from this (large) Python process would show this process's peak. Run
#: from this small interpreter (``-I -S``: no site, ~9 MiB) the floor is far below kstream's.
_RSS_HELPER = """\
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
os.write(int(sys.argv[1]), str(usage.ru_maxrss).encode())
code = os.waitstatus_to_exitcode(status)
os._exit(code if code >= 0 else 128 - code)
"""


class _Launch:
    """Starts a command, optionally through :data:`_RSS_HELPER`, and reaps it."""

    def __init__(self, argv: Sequence[str], measure_rss: bool) -> None:
        self.argv = list(argv)
        self._rfd = self._wfd = -1
        if measure_rss:
            self._rfd, self._wfd = os.pipe()
            self.argv = [sys.executable, "-I", "-S", "-c", _RSS_HELPER, str(self._wfd),
                         *argv]

    def popen(self, **kwargs: Any) -> subprocess.Popen[bytes]:
        fds = (self._wfd,) if self._wfd >= 0 else ()
        try:
            return subprocess.Popen(self.argv, pass_fds=fds, **kwargs)
        finally:
            if self._wfd >= 0:
                os.close(self._wfd)
                self._wfd = -1

    def reap(self, proc: subprocess.Popen[bytes]) -> tuple[int, int | None]:
        """(exit status, peak RSS in KiB or None) once ``proc`` has ended."""
        code = proc.wait()
        if self._rfd < 0:
            return code, None
        try:
            text = os.read(self._rfd, 64)
        finally:
            os.close(self._rfd)
            self._rfd = -1
        return code, int(text) if text.strip().isdigit() else None


def _failure(argv: Sequence[str], code: int, err: IO[bytes]) -> BenchError:
    err.seek(0)
    lines = err.read().decode(errors="replace").strip().splitlines()
    detail = lines[-1] if lines else "no message"
    return BenchError(f"'{' '.join(argv[:5])} ...' exited with status {code}: {detail}")


def run_command(argv: Sequence[str], stdout_path: str | None = None,
                measure_rss: bool = False) -> Sample:
    """Run one process (stdout into ``stdout_path`` if given), timed; with its peak RSS
    if ``measure_rss`` (which adds the helper's start-up, ~10 ms, to the time)."""
    launch = _Launch(argv, measure_rss)
    with tempfile.TemporaryFile() as err:
        out = open(stdout_path, "wb") if stdout_path else None  # noqa: SIM115
        try:
            start = time.perf_counter()
            proc = launch.popen(stdin=subprocess.DEVNULL, stdout=out or subprocess.DEVNULL,
                                stderr=err)
            code, rss = launch.reap(proc)
            if out is not None and stat.S_ISREG(os.fstat(out.fileno()).st_mode):
                os.fsync(out.fileno())
            elapsed = time.perf_counter() - start
        finally:
            if out is not None:
                out.close()
        if code:
            raise _failure(argv, code, err)
    return Sample(elapsed, rss)


def run_pipeline(middle: Sequence[str], src: str, dst: str,
                 measure_rss: bool = False) -> Sample:
    """``cat src | middle | cat > dst``, timed; the peak RSS is the middle process's."""
    launch = _Launch(middle, measure_rss)
    with tempfile.TemporaryFile() as err, open(dst, "wb") as out:
        start = time.perf_counter()
        first = subprocess.Popen(["cat", src], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        assert first.stdout is not None
        filt = launch.popen(stdin=first.stdout, stdout=subprocess.PIPE, stderr=err)
        first.stdout.close()
        assert filt.stdout is not None
        last = subprocess.Popen(["cat"], stdin=filt.stdout, stdout=out)
        filt.stdout.close()
        code, rss = launch.reap(filt)
        cats = (first.wait(), last.wait())
        os.fsync(out.fileno())
        elapsed = time.perf_counter() - start
        if code:
            raise _failure(middle, code, err)
        if any(cats):
            raise BenchError(f"cat in the pipeline around '{middle[0]}' failed")
    return Sample(elapsed, rss)


def openssl_command_version() -> str | None:
    try:
        proc = subprocess.run(["openssl", "version"], capture_output=True, timeout=30,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.decode(errors="replace").strip() or None


# --------------------------------------------------------------------------- API runs


def _api_file(src: str, dst: str, key_path: str, backend: str) -> Sample:
    from kstream.api import encrypt_file
    from kstream.keys import Key
    from kstream.loop import run

    key = Key.from_file(key_path)
    start = time.perf_counter()
    run(encrypt_file(src, dst, key=key, backend=backend))  # type: ignore[arg-type]
    _fsync(dst)
    return Sample(time.perf_counter() - start)


async def _stream_copy(src: str, dst: str, key_path: str, backend: str) -> None:
    """What a library user writes: aiofiles in, ``encrypt_stream``, aiofiles out."""
    import aiofiles

    from kstream.api import encrypt_stream
    from kstream.keys import Key

    key = Key.from_file(key_path)
    async with aiofiles.open(src, "rb") as fin, aiofiles.open(dst, "wb") as fout:

        async def chunks() -> AsyncIterator[bytes]:
            while data := await fin.read(STREAM_READ):
                yield data

        async for piece in encrypt_stream(chunks(), key=key, backend=backend):  # type: ignore[arg-type]
            await fout.write(piece)
        await fout.flush()
        await asyncio.to_thread(os.fsync, fout.fileno())


def decrypts_to(path: str, reference: str, key_path: str) -> bool:
    """Whether the kstream file ``path`` decrypts (authenticated) to ``reference``'s bytes.

    Streams and compares piece by piece, so the check needs no room for another copy.
    """
    from kstream.api import decrypt_stream
    from kstream.keys import Key

    key = Key.from_file(key_path)

    async def compare() -> bool:
        with open(path, "rb") as src, open(reference, "rb") as ref:

            async def chunks() -> AsyncIterator[bytes]:
                while data := src.read(MIB):
                    yield data

            try:
                async for piece in decrypt_stream(chunks(), key=key, backend="openssl"):
                    if ref.read(len(piece)) != piece:
                        return False
            except KstreamError:
                return False
            return ref.read(1) == b""

    return asyncio.run(compare())


def _api_stream(src: str, dst: str, key_path: str, backend: str) -> Sample:
    from kstream.loop import run

    start = time.perf_counter()
    run(_stream_copy(src, dst, key_path, backend))
    return Sample(time.perf_counter() - start)


def _api_stream_default_loop(src: str, dst: str, key_path: str, backend: str) -> Sample:
    start = time.perf_counter()
    asyncio.run(_stream_copy(src, dst, key_path, backend))
    return Sample(time.perf_counter() - start)


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Paths:
    workdir: str
    input: str
    key: str
    raw: str  # openssl enc's output: the reference for --raw, the input of raw decryption
    auth: str  # kstream's authenticated file, the input of decryption
    out: str


def _available_backends() -> list[str]:
    return ["openssl", *(["kernel"] if kernel_status()[0] else [])]


def plan(paths: Paths, bits: int, iv_hex: str, key_hex: str,
         backends: Sequence[str]) -> list[Entry]:
    """Every entry of a round, baselines first."""
    p = paths
    cipher = f"-aes-{bits}-ctr"
    ossl = ["openssl", "enc", cipher, "-K", key_hex, "-iv", iv_hex]

    def equals(reference: str) -> Callable[[str], str | None]:
        return lambda out: None if same_content(out, reference) else f"differs from {reference}"

    def authentic(out: str) -> str | None:
        # A fresh random IV makes every authenticated file different: check by decrypting.
        if decrypts_to(out, p.input, p.key):
            return None
        return f"does not decrypt to {p.input}"

    entries = [
        Entry("cp", "cp", lambda out, rss: run_command(["cp", p.input, out], None, rss),
              baseline="cmd-openssl-enc"),
        Entry("cmd-openssl-enc", f"openssl enc {cipher}",
              lambda out, rss: run_command([*ossl, "-in", p.input, "-out", out], None, rss),
              check=equals(p.raw)),
        Entry("cmd-openssl-dec", f"openssl enc -d {cipher}",
              lambda out, rss: run_command([*ossl, "-d", "-in", p.raw, "-out", out], None,
                                           rss),
              check=equals(p.input)),
        # What any filter between two cats can at best reach here.
        Entry("cmd-cat-pipe", "cat | cat", lambda out, rss: run_pipeline(["cat"], p.input, out,
                                                                           rss),
              baseline="cmd-openssl-pipe", check=equals(p.input)),
        Entry("cmd-openssl-pipe", f"cat | openssl enc {cipher} | cat",
              lambda out, rss: run_pipeline(ossl, p.input, out, rss), check=equals(p.raw)),
    ]
    for b in backends:
        opts = ("-q", "--no-progress", "--backend", b, "-k", p.key)

        def cli(verb: str, src: str, *extra: str, opts: tuple[str, ...] = opts,
                stdout: bool = False) -> Callable[[str, bool], Sample]:
            if stdout:
                return lambda out, rss: run_command(
                    [*KSTREAM, verb, *opts, *extra, src, "-"], out, rss)
            return lambda out, rss: run_command([*KSTREAM, verb, *opts, *extra, src, out],
                                                None, rss)

        def pipe(opts: tuple[str, ...] = opts) -> Callable[[str, bool], Sample]:
            return lambda out, rss: run_pipeline([*KSTREAM, "encrypt", *opts, "-", "-"],
                                                 p.input, out, rss)

        def api(fn: Callable[[str, str, str, str], Sample], b: str = b
                ) -> Callable[[str, bool], Sample]:
            return lambda out, rss: fn(p.input, out, p.key, b)  # in-process: no own RSS

        raw = ("--raw", "--iv", iv_hex)
        entries += [
            Entry(f"kstream-{b}-raw-enc", f"kstream encrypt --raw ({b})",
                  cli("encrypt", p.input, *raw), b, "cmd-openssl-enc", check=equals(p.raw),
                  is_kstream=True),
            Entry(f"kstream-{b}-raw-dec", f"kstream decrypt --raw ({b})",
                  cli("decrypt", p.raw, *raw), b, "cmd-openssl-dec", check=equals(p.input),
                  is_kstream=True),
            Entry(f"kstream-{b}-enc", f"kstream encrypt ({b})", cli("encrypt", p.input), b,
                  "cmd-openssl-enc", check=authentic, is_kstream=True),
            Entry(f"kstream-{b}-dec", f"kstream decrypt ({b})", cli("decrypt", p.auth), b,
                  "cmd-openssl-dec", check=equals(p.input), is_kstream=True),
            Entry(f"kstream-{b}-stdout", f"kstream encrypt IN - > OUT ({b})",
                  cli("encrypt", p.input, stdout=True), b, "cmd-openssl-enc",
                  check=authentic, is_kstream=True),
            Entry(f"kstream-{b}-pipe", f"cat | kstream encrypt - - | cat ({b})", pipe(), b,
                  "cmd-openssl-pipe", check=authentic, is_kstream=True),
            Entry(f"kstream-{b}-api-file", f"API encrypt_file ({b})", api(_api_file, b), b,
                  f"kstream-{b}-enc", "throughput", check=authentic),
            Entry(f"kstream-{b}-api-stream", f"API encrypt_stream, aiofiles ({b})",
                  api(_api_stream, b), b, f"kstream-{b}-stdout", "throughput",
                  check=authentic),
            # Information, not a goal: the same program under asyncio.run.
            Entry(f"kstream-{b}-api-stream-asyncio",
                  f"API encrypt_stream, aiofiles, asyncio.run ({b})",
                  api(_api_stream_default_loop, b), b, f"kstream-{b}-stdout", "throughput",
                  check=authentic),
        ]
    return entries


def _paired_ratios(entry: Entry, by_id: dict[str, Entry]) -> list[float]:
    """This entry's time against its baseline's, round by round (the same round's)."""
    if entry.baseline is None or entry.baseline not in by_id:
        return []
    base = by_id[entry.baseline].times
    if entry.compare == "throughput":
        return [b / t for t, b in zip(entry.times, base, strict=True) if t > 0]
    return [t / b for t, b in zip(entry.times, base, strict=True) if b > 0]


def _paired_ratio(entry: Entry, by_id: dict[str, Entry]) -> float | None:
    ratios = _paired_ratios(entry, by_id)
    return median(ratios) if ratios else None


def _goals(entries: list[Entry], on_disk: bool) -> list[dict[str, Any]]:
    """The issue's goals, judged for the OpenSSL backend; the kernel's are shown as info."""
    by_id = {e.id: e for e in entries}
    specs: list[tuple[str, str, float]] = []
    for b in ("openssl", "kernel"):
        k = f"kstream-{b}"
        specs += [
            (f"{k}-raw-enc", "raw", 0.0), (f"{k}-raw-dec", "raw", 0.0),
            (f"{k}-enc", "auth", 0.0), (f"{k}-dec", "auth", 0.0),
            (f"{k}-pipe", "pipe", 0.0),
            (f"{k}-api-file", "api", API_GOAL), (f"{k}-api-stream", "api", API_GOAL),
        ]
    goals = []
    for entry_id, kind, limit in specs:
        entry = by_id.get(entry_id)
        if entry is None or not entry.times:
            continue
        if kind != "api":
            limit = ON_DISK if on_disk else TMPFS_GOALS[kind]
        ratios = _paired_ratios(entry, by_id)
        if not ratios:
            continue
        ratio = median(ratios)
        baseline = by_id[entry.baseline].label if entry.baseline else ""
        higher = entry.compare == "throughput"
        met = ratio >= limit if higher else ratio <= limit
        goals.append({
            "entry": entry.id,
            "label": entry.label,
            "baseline": baseline,
            "measure": "throughput ratio" if higher else "time ratio",
            "ratio": round(ratio, 3),
            "ratio_min": round(min(ratios), 3),
            "ratio_max": round(max(ratios), 3),
            "goal": f"{'>=' if higher else '<='} {limit:.2f}x",
            "verdict": ("PASS" if met else "MISS") if entry.backend == "openssl" else "info",
        })
    rss = [kib for e in entries if e.is_kstream for kib in e.rss_kib]
    if rss:
        peak = max(rss) / 1024
        goals.append({
            "entry": "rss",
            "label": "peak RSS of any kstream process",
            "baseline": "",
            "measure": "MiB",
            "ratio": round(peak, 1),
            "goal": f"<= {RSS_GOAL_MIB} MiB",
            "verdict": "PASS" if peak <= RSS_GOAL_MIB else "MISS",
        })
    return goals


def _rss_runs(paths: Paths, size: int, backends: Sequence[str]) -> list[dict[str, Any]]:
    """Encrypt a sparse file of ``size`` to /dev/null: memory must not grow with the input.

    Sparse and to /dev/null so that a 10 GiB check needs neither 10 GiB of disk nor of RAM
    (on tmpfs a file is RAM); the holes still go through read, cipher and write like data.
    """
    sparse = os.path.join(paths.workdir, "sparse")
    with open(sparse, "wb") as f:
        f.truncate(size)
    runs = []
    try:
        for b in backends:
            for label, extra in (("encrypt IN - > /dev/null", ()),
                                 ("encrypt --raw IN - > /dev/null",
                                  ("--raw", "--iv", "00" * 16))):
                argv = [*KSTREAM, "encrypt", "-q", "--no-progress", "--backend", b, "-k",
                        paths.key, *extra, sparse, "-"]
                sample = run_command(argv, os.devnull, measure_rss=True)
                rss = (sample.rss_kib or 0) / 1024
                runs.append({
                    "label": f"kstream {label} ({b}), sparse {format_size(size)} input",
                    "backend": b,
                    "size": size,
                    "seconds": round(sample.seconds, 3),
                    "mb_s": round(size / sample.seconds / MB, 1),
                    "rss_mib": round(rss, 1),
                    "verdict": "PASS" if rss <= RSS_GOAL_MIB else "MISS",
                })
    finally:
        _unlink(sparse)
    return runs


def run_files(
    *,
    size: int = GIB,
    directory: str | None = None,
    repeat: int = 5,
    warmup: int = 1,
    key_bits: int = 128,
    rss_size: int | None = None,
    backends: Sequence[str] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> FilesReport:
    """Generate the input, run ``warmup + repeat`` interleaved rounds, clean everything up."""
    directory = directory or default_dir()
    if not os.path.isdir(directory):
        raise UsageError(f"--dir '{directory}' is not a directory")
    if shutil.which("openssl") is None or shutil.which("cp") is None:
        raise UsageError("--files compares with the openssl and cp commands; install openssl")
    st = os.statvfs(directory)
    free = st.f_bavail * st.f_frsize
    need = 4 * size + 16 * MIB
    if free < need:
        raise UsageError(
            f"--dir '{directory}' has {format_size(free)} free; a {format_size(size)} run "
            f"needs {format_size(need)} (input, two reference files, one output)"
        )
    fstype = filesystem_type(directory)
    on_disk = fstype not in MEMORY_FILESYSTEMS
    backends = list(backends or _available_backends())
    workdir = tempfile.mkdtemp(prefix="kstream-bench-", dir=directory)
    try:
        paths = Paths(workdir, *(os.path.join(workdir, name)
                                 for name in ("input", "key", "input.raw", "input.kst", "out")))
        key = os.urandom(key_bits // 8)
        iv = os.urandom(16)
        fd = os.open(paths.key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key.hex() + "\n")
        generate_file(paths.input, size)
        run_command(["openssl", "enc", f"-aes-{key_bits}-ctr", "-K", key.hex(), "-iv",
                     iv.hex(), "-in", paths.input, "-out", paths.raw])
        run_command([*KSTREAM, "encrypt", "-q", "--no-progress", "--backend", "openssl",
                     "-k", paths.key, paths.input, paths.auth])
        entries = plan(paths, key_bits, iv.hex(), key.hex(), backends)
        rounds = warmup + repeat
        steps = rounds * len(entries)
        for r in range(rounds):
            shift = r % len(entries)
            for i, entry in enumerate(entries[shift:] + entries[:shift]):
                if progress is not None:
                    kind = "warm-up" if r < warmup else "round"
                    number = r + 1 if r < warmup else r - warmup + 1
                    progress(r * len(entries) + i, steps, f"{kind} {number}: {entry.label}")
                _unlink(paths.out)
                # The first round checks outputs and measures peak RSS (through a helper
                # whose start-up is then in the time; with a warm-up that is not counted).
                sample = entry.run(paths.out, r == 0)
                if r == 0 and entry.check is not None:
                    problem = entry.check(paths.out)
                    if problem:
                        raise BenchError(f"{entry.label}: the output {problem}")
                _unlink(paths.out)
                if sample.rss_kib is not None:
                    entry.rss_kib.append(sample.rss_kib)
                if r >= warmup:
                    entry.times.append(sample.seconds)
        rss_runs = _rss_runs(paths, rss_size, backends) if rss_size else []
        floor = run_command(["true"], measure_rss=True).rss_kib
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    by_id = {e.id: e for e in entries}
    rows = []
    for e in entries:
        ratio = _paired_ratio(e, by_id)
        rows.append({
            "id": e.id,
            "label": e.label,
            "backend": e.backend,
            "median_s": round(median(e.times), 4),
            "mb_s": round(size / median(e.times) / MB, 1) if median(e.times) else 0.0,
            "baseline": e.baseline,
            "compare": e.compare,
            "ratio": None if ratio is None else round(ratio, 3),
            "peak_rss_mib": round(max(e.rss_kib) / 1024, 1) if e.rss_kib else None,
            "times": [round(t, 4) for t in e.times],
        })
    warnings = []
    if in_uml():
        warnings.append(UML_WARNING)
    settings = {
        "size": size,
        "dir": directory,
        "filesystem": fstype,
        "on_disk": on_disk,
        "repeat": repeat,
        "warmup": warmup,
        "key_bits": key_bits,
        "backends": backends,
        "openssl_command": openssl_command_version(),
        "rss_size": rss_size,
        #: What the RSS helper shows for a command that uses almost nothing (``true``).
        "rss_floor_mib": None if floor is None else round(floor / 1024, 1),
    }
    return FilesReport(machine_info(), settings, rows, _goals(entries, on_disk), rss_runs,
                       warnings)


# --------------------------------------------------------------------------- output


def format_files_report(report: FilesReport) -> str:
    s = report.settings
    where = f"{s['dir']} ({s['filesystem']}{', a disk' if s['on_disk'] else ''})"
    lines = [
        f"kstream bench --files: {format_size(s['size'])} generated file in {where}, "
        f"AES-{s['key_bits']}-CTR, medians of {s['repeat']} interleaved rounds after "
        f"{s['warmup']} warm-up",
        f"machine: {describe_machine(report.machine)}",
        f"openssl command: {s['openssl_command'] or 'unknown'}; kstream's OpenSSL "
        f"(cryptography): {report.machine['openssl']}",
        "",
    ]
    by_id = {row["id"]: row for row in report.entries}
    table = [("", "median s", "MB/s", "ratio", "vs", "peak RSS")]
    for row in report.entries:
        base = by_id.get(row["baseline"] or "")
        ratio = "" if row["ratio"] is None else f"{row['ratio']:.2f}x"
        vs = ""
        if base is not None:
            vs = ("throughput of " if row["compare"] == "throughput" else "time of ") \
                + base["label"]
        rss = "" if row["peak_rss_mib"] is None else f"{row['peak_rss_mib']:.0f} MiB"
        table.append((row["label"], f"{row['median_s']:.3f}", f"{row['mb_s']:,.0f}", ratio, vs,
                      rss))
    widths = [max(len(cells[i]) for cells in table) for i in range(6)]
    for cells in table:
        lines.append("  ".join((
            cells[0].ljust(widths[0]), cells[1].rjust(widths[1]), cells[2].rjust(widths[2]),
            cells[3].rjust(widths[3]), cells[4].ljust(widths[4]), cells[5].rjust(widths[5]),
        )).rstrip())
    lines += ["", "goals (time ratio: kstream's time / the baseline's in the same round, "
              "lower is better; throughput ratio: higher is better; medians):"]
    for goal in report.goals:
        value = (f"{goal['ratio']:.1f} MiB" if goal["measure"] == "MiB"
                 else f"{goal['ratio']:.3f}x")  # 3 digits: 0.853 must not print as 0.85
        against = f" vs {goal['baseline']}" if goal["baseline"] else ""
        spread = ""
        if "ratio_min" in goal and goal["ratio_min"] != goal["ratio_max"]:
            spread = f" (rounds {goal['ratio_min']:.2f}-{goal['ratio_max']:.2f})"
        lines.append(f"  {goal['verdict']:<4}  {value:>9}  goal {goal['goal']:<9}  "
                     f"{goal['label']}{against}{spread}")
    for run in report.rss_runs:
        lines.append(f"  {run['verdict']:<4}  {run['rss_mib']:>5.1f} MiB  goal <= "
                     f"{RSS_GOAL_MIB} MiB  peak RSS, {run['label']} "
                     f"({run['mb_s']:,.0f} MB/s)")
    if not report.rss_runs:
        lines.append("  (peak RSS for a larger, sparse input: add --rss-size 10G)")
    if s.get("rss_floor_mib") is not None:
        lines.append(f"  (peak RSS is measured once per entry through a small launcher, which "
                     f"shows {s['rss_floor_mib']:.0f} MiB even for 'true'; the API runs in "
                     "this process and has no RSS of its own)")
    if report.warnings:
        lines.append("")
        lines += [f"WARNING: {warning}" for warning in report.warnings]
    return "\n".join(lines)
