"""A crafted header sizes no more memory than kstream allows: the largest segment size a
reader accepts, through every decryption path, stays under the 64 MiB peak RSS a run is allowed
(docs/format.md), and the file is refused at segment 0 (the attacker has no key)."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from kstream.format import MAX_SEGMENT, OVERHEAD, CipherSuite, Header

LIMIT_KIB = 64 * 1024
FULL_SEGMENTS = 8

#: Runs one command as a child and prints its peak RSS in KiB (Linux: ru_maxrss is KiB).
_MEASURE = """
import resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
sys.stderr.buffer.write(proc.stderr)
print(proc.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""

_STREAM_API = """
import sys, kstream

async def pieces(path):
    with open(path, "rb") as f:
        while piece := f.read(1 << 20):
            yield piece

async def main():
    key = kstream.Key.from_file(sys.argv[1])
    try:
        async for _ in kstream.decrypt_stream(pieces(sys.argv[2]), key=key,
                                              backend="openssl"):
            pass
    except kstream.IntegrityError as exc:
        print(f"kstream: error: {exc}", file=sys.stderr)
        sys.exit(1)

kstream.run(main())
"""


def crafted_file(path: Path) -> None:
    """A header with S = MAX_SEGMENT, then FULL_SEGMENTS frames of S random bytes with
    made-up tags and an empty last segment: a size that fits an intact file, so every
    driver (also the parallel ranges) takes it."""
    header = Header(suite=CipherSuite.AES_128_CTR, iv=os.urandom(16), auth_param=MAX_SEGMENT)
    with path.open("wb") as f:
        f.write(header.encode())
        for _ in range(FULL_SEGMENTS):
            f.write(struct.pack(">I", MAX_SEGMENT))
            f.write(os.urandom(MAX_SEGMENT + 16))
        f.write(struct.pack(">I", 1 << 31) + os.urandom(16))
    assert path.stat().st_size == 32 + FULL_SEGMENTS * (MAX_SEGMENT + OVERHEAD) + OVERHEAD


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("crafted")
    key = tmp / "key"
    key.write_text(os.urandom(16).hex() + "\n")
    key.chmod(0o600)
    data = tmp / "crafted.kst"
    crafted_file(data)
    return key, data


def peak_rss(argv: list[str]) -> tuple[int, int, str]:
    """(exit status, peak RSS in KiB, stderr) of ``argv`` run in a fresh child."""
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, *argv],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    status, rss = proc.stdout.split()
    return int(status), int(rss), proc.stderr


KSTREAM = [sys.executable, "-m", "kstream"]


@pytest.mark.parametrize("path", ["file", "parallel ranges", "pipe", "stream api"])
def test_crafted_header_at_the_largest_segment_stays_under_64_mib(
    path: str, crafted: tuple[Path, Path], tmp_path: Path
) -> None:
    key, data = crafted
    out = tmp_path / "out"
    common = ["-k", str(key), "--backend", "openssl"]
    argv = {
        "file": [*KSTREAM, "decrypt", *common, "-j", "1", str(data), str(out)],
        "parallel ranges": [*KSTREAM, "decrypt", *common, "-j", "8", str(data), str(out)],
        "pipe": [
            "bash",
            "-c",
            f'cat "$1" | "$2" -m kstream decrypt {" ".join(common)} - - '
            '| cat >/dev/null; exit "${PIPESTATUS[1]}"',
            "bash",
            str(data),
            sys.executable,
        ],
        "stream api": [sys.executable, "-c", _STREAM_API, str(key), str(data)],
    }[path]
    status, rss, stderr = peak_rss(argv)
    assert status == 1, stderr
    assert "segment 0" in stderr and "authentication" in stderr, stderr
    assert not out.exists()
    assert rss <= LIMIT_KIB, f"{path}: peak RSS {rss} KiB > {LIMIT_KIB} KiB"
