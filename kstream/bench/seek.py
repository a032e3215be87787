"""``python -m kstream.bench.seek``: what :func:`kstream.open` costs, as ratios measured
side by side on this machine (a developer's script: the numbers are this machine's).

- random: N reads of 4 KiB at random offsets through ``kstream.open``, against the same
  reads done by hand with ``cryptography`` (``pread`` of the segment, its GMAC tag
  checked, AES-CTR of the segment from its counter, the slice): a reader that decrypts
  segments whole, with nothing around it. Also the segments read and checked per read.
- sequential: the whole file through ``kstream.open`` in 1 MiB reads, against
  ``decrypt_file`` of it to ``/dev/null`` (throughput ratio).
- parquet: bytes read from the encrypted file to read one column through ``kstream.open``,
  against the bytes pyarrow reads from the plaintext file for the same column.
- zip: one 1 MiB member out of an encrypted zip of the file's size, against a whole
  ``decrypt_file`` of it.
- memory: the peak of Python's allocations (tracemalloc) during the sequential read.

Each timing is the best of ``--repeat`` runs; files live in ``--dir`` (default: a new
temporary directory, removed at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import io
import os
import random
import tempfile
import time
import tracemalloc
import zipfile
from collections.abc import Callable, Sequence
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import kstream
from kstream.backends.base import counter_add
from kstream.format import OVERHEAD, Header
from kstream.segments import mac_key_info

MIB = 1 << 20
READ = 4096


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def make_file(path: str, size: int, key: kstream.Key) -> str:
    """``size`` random bytes at ``path`` and their encryption at ``path.kst``."""
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 16 * MIB)
            f.write(os.urandom(n))
            left -= n
    asyncio.run(kstream.encrypt_file(path, path + ".kst", key=key, backend="openssl", force=True))
    return path + ".kst"


def by_hand(path: str, key_bytes: bytes, offsets: Sequence[int]) -> Callable[[], None]:
    """The reads done by hand: per read, one segment read, checked and decrypted."""
    with open(path, "rb") as f:
        header = Header.parse(f.read(64))
    segment, unit, base = header.auth_param, header.auth_param + OVERHEAD, header.size
    mac = AESGCM(hmac.new(key_bytes, mac_key_info(header), hashlib.sha256).digest())
    size = os.path.getsize(path)

    def run() -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            for offset in offsets:
                index = offset // segment
                start = base + index * unit
                data = os.pread(fd, min(unit, size - start), start)
                n = len(data) - OVERHEAD
                last = data[0] >> 7 == 1
                nonce = index.to_bytes(11, "big") + bytes([last])
                ciphertext = data[4 : 4 + n]
                mac.decrypt(nonce, data[4 + n :], ciphertext)
                iv = counter_add(header.iv, index * segment // 16)
                ctr = Cipher(algorithms.AES(key_bytes), modes.CTR(iv)).decryptor()
                plain = ctr.update(ciphertext)
                first = offset - index * segment
                assert len(plain[first : first + READ]) > 0
        finally:
            os.close(fd)

    return run


def random_reads(path: str, key: kstream.Key, offsets: Sequence[int]) -> Callable[[], int]:
    def run() -> int:
        with kstream.open(path, key=key, backend="openssl") as f:
            for offset in offsets:
                f.seek(offset)
                f.read(READ)
            return f.segments_decrypted - 1  # the last segment, checked at open

    return run


def sequential(path: str, key: kstream.Key) -> None:
    with kstream.open(path, key=key, backend="openssl") as f:
        while f.read(MIB):
            pass


def sequential_into(path: str, key: kstream.Key) -> None:
    buffer = bytearray(MIB)
    with kstream.open(path, key=key, backend="openssl") as f:
        while f.readinto(buffer):
            pass


def decrypt_whole(path: str, key: kstream.Key) -> None:
    asyncio.run(kstream.decrypt_file(path, "/dev/null", key=key, backend="openssl"))


class Counting(io.RawIOBase):
    """A plaintext file that counts the bytes read from it."""

    def __init__(self, path: str) -> None:
        self._f = open(path, "rb")  # noqa: SIM115 (closed with this object)
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def readinto(self, buffer: Any) -> int:
        n = self._f.readinto(buffer)
        self.read_bytes += n
        return n

    def close(self) -> None:
        self._f.close()
        super().close()


def parquet_ratio(directory: str, key: kstream.Key, size: int) -> tuple[int, int, int]:
    """Bytes read for one column of four (a Parquet file of about ``size`` bytes in eight
    row groups): from the encrypted file, whole segments, and by pyarrow from the
    plaintext file; and the size of one column chunk."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = max(size // 64, 1024)

    def column() -> Any:
        return pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(16), rows, [None, pa.py_buffer(os.urandom(16 * rows))]
        )

    table = pa.table({f"c{i}": column() for i in range(4)})
    plain = os.path.join(directory, "t.parquet")
    pq.write_table(table, plain, row_group_size=rows // 8, compression="none")
    with (
        kstream.open(plain + ".kst", "wb", key=key, backend="openssl", force=True) as out,
        open(plain, "rb") as source,
    ):
        while chunk := source.read(MIB):
            out.write(chunk)
    counting = Counting(plain)
    pq.read_table(io.BufferedReader(counting, buffer_size=1), columns=["c1"])
    with kstream.open(plain + ".kst", key=key, backend="openssl") as f:
        pq.read_table(f, columns=["c1"])
        encrypted = f.segments_decrypted * (f.segment_size + OVERHEAD)
    counting.close()
    return encrypted, counting.read_bytes, 16 * rows // 8


def zip_ratio(directory: str, key: kstream.Key, size: int, repeat: int) -> tuple[float, float]:
    """Seconds to extract one 1 MiB member of an encrypted zip of ``size`` bytes, and to
    decrypt the whole zip."""
    path = os.path.join(directory, "a.zip.kst")
    with (
        kstream.open(path, "wb", key=key, backend="openssl", force=True) as out,
        zipfile.ZipFile(out, "w") as archive,
    ):
        for i in range(max(size // MIB, 2)):
            archive.writestr(f"m{i:05d}", os.urandom(MIB))
    members = max(size // MIB, 2)

    def one() -> None:
        with (
            kstream.open(path, key=key, backend="openssl") as f,
            zipfile.ZipFile(f) as archive,
        ):
            assert len(archive.read(f"m{members // 2:05d}")) == MIB

    return best(one, repeat), best(lambda: decrypt_whole(path, key), repeat)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kstream.bench.seek", description=__doc__)
    parser.add_argument("--size", type=int, default=1024, help="file size in MiB (1024)")
    parser.add_argument("--reads", type=int, default=1000, help="random 4 KiB reads (1000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing; best kept")
    parser.add_argument("--dir", default=None, help="where the files go (default: a temp dir)")
    parser.add_argument("--no-parquet", action="store_true", help="skip the pyarrow row")
    args = parser.parse_args(argv)
    size = args.size * MIB
    key = kstream.Key.generate(256)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="kstream-seek-") as tmp:
        path = make_file(os.path.join(tmp, "data"), size, key)
        rng = random.Random(27)  # noqa: S311 (offsets to read, not secrets)
        offsets = [rng.randrange(size - READ) for _ in range(args.reads)]
        hand = best(by_hand(path, key.material(), offsets), args.repeat)
        reads = random_reads(path, key, offsets)
        fileobj = best(reads, args.repeat)
        per_read = reads() / len(offsets)
        print(f"random: {len(offsets)} reads of 4 KiB in a {args.size} MiB file")
        print(f"  kstream.open {fileobj:.3f} s, by hand {hand:.3f} s: ratio {fileobj / hand:.2f}")
        print(f"  segments read and checked per read: {per_read:.3f} (cache of 8 segments)")
        seq = best(lambda: sequential(path, key), args.repeat)
        into = best(lambda: sequential_into(path, key), args.repeat)
        whole = best(lambda: decrypt_whole(path, key), args.repeat)
        print(f"sequential: decrypt_file to /dev/null {size / whole / MIB:.0f} MiB/s;")
        print(f"  read(1 MiB) {size / seq / MIB:.0f} MiB/s: ratio {whole / seq:.2f} of it")
        print(f"  readinto(1 MiB) {size / into / MIB:.0f} MiB/s: ratio {whole / into:.2f}")
        tracemalloc.start()
        sequential(path, key)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"memory: peak of Python allocations while reading {peak / MIB:.1f} MiB")
        if not args.no_parquet:
            encrypted, plain, chunk = parquet_ratio(tmp, key, size)
            print(f"parquet: one column of four, chunks of {chunk / MIB:.1f} MiB:")
            print(f"  {encrypted / MIB:.1f} MiB of segments read, pyarrow on the plaintext")
            print(f"  {plain / MIB:.1f} MiB: ratio {encrypted / plain:.2f}")
        member, full = zip_ratio(tmp, key, size, args.repeat)
        print(f"zip: one 1 MiB member {member * 1000:.1f} ms, whole decrypt {full:.2f} s:")
        print(f"  {100 * member / full:.2f} % of the whole")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
