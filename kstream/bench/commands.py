"""How one entry of ``kstream bench --files`` is run and timed: a process, a pipeline, or the
coroutine API inside this process; each gives a :class:`Sample`.

The command-line entries are fresh processes timed from start to exit (Python's start-up
included, as a user would see it), plus an ``fsync`` of the output, because kstream fsyncs
its output files and ``openssl``/``cp`` do not. Peak RSS comes from ``wait4`` of the measured
process itself (not of ``cat`` or of this process).
"""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

from kstream.bench.units import MIB
from kstream.bench.workfiles import fsync_path
from kstream.errors import KstreamError

KSTREAM = (sys.executable, "-m", "kstream")
#: What the API's stream example reads per step (one await per MiB, as a user would write it).
STREAM_READ = MIB


class BenchError(KstreamError):
    """A command under test failed or produced wrong output: its numbers would mean nothing."""

    exit_code = 1


@dataclass
class Sample:
    """One timed run: its seconds, and its peak RSS in KiB when that was measured."""

    seconds: float
    rss_kib: int | None = None


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
            self.argv = [sys.executable, "-I", "-S", "-c", _RSS_HELPER, str(self._wfd), *argv]

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


def run_command(
    argv: Sequence[str], stdout_path: str | None = None, measure_rss: bool = False
) -> Sample:
    """Run one process (stdout into ``stdout_path`` if given), timed; with its peak RSS
    if ``measure_rss`` (which adds the helper's start-up, ~10 ms, to the time)."""
    launch = _Launch(argv, measure_rss)
    with tempfile.TemporaryFile() as err:
        out = open(stdout_path, "wb") if stdout_path else None  # noqa: SIM115
        try:
            start = time.perf_counter()
            proc = launch.popen(
                stdin=subprocess.DEVNULL, stdout=out or subprocess.DEVNULL, stderr=err
            )
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


def run_pipeline(middle: Sequence[str], src: str, dst: str, measure_rss: bool = False) -> Sample:
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
        proc = subprocess.run(["openssl", "version"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.decode(errors="replace").strip() or None


# --------------------------------------------------------------------------- API runs


def api_file(src: str, dst: str, key_path: str, backend: str) -> Sample:
    """``encrypt_file`` in this process, on the event loop the command line uses."""
    from kstream.api import encrypt_file
    from kstream.keys.key import Key
    from kstream.loop import run

    key = Key.from_file(key_path)
    start = time.perf_counter()
    run(encrypt_file(src, dst, key=key, backend=backend))  # type: ignore[arg-type]
    fsync_path(dst)
    return Sample(time.perf_counter() - start)


async def _stream_copy(src: str, dst: str, key_path: str, backend: str) -> None:
    """What a library user writes: aiofiles in, ``encrypt_stream``, aiofiles out."""
    import aiofiles

    from kstream.api import encrypt_stream
    from kstream.keys.key import Key

    key = Key.from_file(key_path)
    async with aiofiles.open(src, "rb") as fin, aiofiles.open(dst, "wb") as fout:

        async def chunks() -> AsyncIterator[bytes]:
            while data := await fin.read(STREAM_READ):
                yield data

        async for piece in encrypt_stream(chunks(), key=key, backend=backend):  # type: ignore[arg-type]
            await fout.write(piece)
        await fout.flush()
        await asyncio.to_thread(os.fsync, fout.fileno())


def api_stream(src: str, dst: str, key_path: str, backend: str) -> Sample:
    """:func:`_stream_copy` on the event loop the command line uses (uvloop if installed)."""
    from kstream.loop import run

    start = time.perf_counter()
    run(_stream_copy(src, dst, key_path, backend))
    return Sample(time.perf_counter() - start)


def api_stream_default_loop(src: str, dst: str, key_path: str, backend: str) -> Sample:
    """:func:`_stream_copy` under ``asyncio.run``: what a program on the default loop pays."""
    start = time.perf_counter()
    asyncio.run(_stream_copy(src, dst, key_path, backend))
    return Sample(time.perf_counter() - start)
