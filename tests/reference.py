"""An independent AES-CTR reference for tests: AES-ECB of explicit counter blocks, XORed.

It shares no code with kstream's streaming paths (no CTR mode object, no chunking), so a
bug in how kstream splits, carries or restarts the counter cannot hide in the reference.
"""

from __future__ import annotations

import hashlib
import itertools

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def keystream(key: bytes, iv: bytes, nblocks: int) -> bytes:
    start = int.from_bytes(iv, "big")
    counters = b"".join(((start + i) % (1 << 128)).to_bytes(16, "big") for i in range(nblocks))
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


def unframe(body: bytes) -> bytes:
    """The CTR ciphertext inside an authenticated body: frames and tags removed.

    Written from docs/format.md alone, independently of ``kstream.segments``.
    """
    out = bytearray()
    pos = 0
    while True:
        word = int.from_bytes(body[pos : pos + 4], "big")
        size = word & 0x7FFFFFFF
        out += body[pos + 4 : pos + 4 + size]
        pos += 4 + size + 16
        if word >> 31:
            assert pos == len(body), "data after the last segment"
            return bytes(out)


def seal(key: bytes, header: bytes, plaintext: bytes, segment: int) -> bytes:
    """A whole authenticated file, built from docs/format.md alone."""
    import hashlib
    import hmac

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    iv = header[16:32]
    label = b"kstream v1 segment MAC key: GMAC-AES-256\x00"
    mac_key = hmac.new(key, label + header + b"\x01", hashlib.sha256).digest()  # HKDF-Expand
    gmac = AESGCM(mac_key)
    ct = ctr(key, iv, plaintext)
    pieces = [ct[i : i + segment] for i in range(0, len(ct), segment)]
    if not pieces or len(pieces[-1]) == segment:
        pieces.append(b"")
    out = bytearray(header)
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        out += ((last << 31) | len(piece)).to_bytes(4, "big") + piece
        out += gmac.encrypt(index.to_bytes(11, "big") + bytes([last]), b"", piece)
    return bytes(out)


def passphrase_key(passphrase: bytes, header: bytes) -> bytes:
    """The AES-256 key of a passphrase file, from docs/format.md's description of the passphrase
    block alone: scrypt (Python's ``hashlib``, not kstream's ``cryptography`` call) with the
    block's log2 N, r, p and salt, 32 bytes."""
    import hashlib

    assert header[10] & 1, "not a passphrase file"
    kdf, log2n, r, p = header[32:36]
    assert kdf == 1
    salt = header[36:52]
    return hashlib.scrypt(
        passphrase, salt=salt, n=1 << log2n, r=r, p=p, dklen=32, maxmem=256 * r << log2n
    )


def seal_with_passphrase(passphrase: bytes, header: bytes, plaintext: bytes, segment: int) -> bytes:
    """A whole passphrase file: the key from :func:`passphrase_key`, then :func:`seal`, whose
    MAC key binds all 52 header bytes."""
    return seal(passphrase_key(passphrase, header), header, plaintext, segment)


def check_blob(vector: dict[str, object], blob: bytes, head: int) -> None:
    """``blob`` is the file a published vector gives: whole, or by its size, its first
    ``head`` bytes and its SHA-256 where the file is too large to publish."""
    if "file" in vector:
        assert blob.hex() == vector["file"]
    else:
        assert len(blob) == vector["file_size"]
        assert blob[:head].hex() == vector["file_head"]
        assert hashlib.sha256(blob).hexdigest() == vector["file_sha256"]
