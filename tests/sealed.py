"""Encrypted files for the file-object tests, sealed by the independent reference
(tests/reference.py), with small segments so that a few hundred bytes span several."""

from __future__ import annotations

import os

from reference import seal, seal_with_passphrase

from kstream.format import CipherSuite, Header, KdfParams

#: The segment size of the test files: the smallest the format allows is 16; 64 keeps
#: the files small while a read can still start and end inside a segment.
S = 64
#: scrypt's cheapest work factor that kstream writes: a derivation takes milliseconds.
WORK_FACTOR = 10
PASSPHRASE = b"correct horse battery staple"


def seal_file(
    plain: bytes, key: bytes | None = None, *, segment: int = S, passphrase: bytes | None = None
) -> bytes:
    """A kstream file of ``plain`` under ``key`` (raw bytes) or ``passphrase``."""
    iv = os.urandom(16)
    if passphrase is not None:
        kdf = KdfParams(log2n=WORK_FACTOR, salt=os.urandom(16))
        header = Header(CipherSuite.AES_256_CTR, iv, auth_param=segment, kdf=kdf)
        return seal_with_passphrase(passphrase, header.encode(), plain, segment)
    assert key is not None
    header = Header(CipherSuite.for_key_size(len(key)), iv, auth_param=segment)
    return seal(key, header.encode(), plain, segment)
