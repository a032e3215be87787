"""An independent AES-CTR reference for tests: AES-ECB of explicit counter blocks, XORed.

It shares no code with kstream's streaming paths (no CTR mode object, no chunking), so a
bug in how kstream splits, carries or restarts the counter cannot hide in the reference.
"""

from __future__ import annotations

import itertools

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def keystream(key: bytes, iv: bytes, nblocks: int) -> bytes:
    start = int.from_bytes(iv, "big")
    counters = b"".join(
        ((start + i) % (1 << 128)).to_bytes(16, "big") for i in range(nblocks)
    )
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(counters) + enc.finalize()


def ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    ks = keystream(key, iv, (len(data) + 15) // 16)
    n = len(data)
    return (int.from_bytes(data, "big") ^ int.from_bytes(ks[:n], "big")).to_bytes(n, "big")


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (taken modulo its length, sorted)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]
