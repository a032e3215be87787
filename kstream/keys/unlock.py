"""What unlocks a run: a key, or a passphrase derived into one with the file's header.

The rules that pair a secret with a header live here, below the plan, so that every way of
running (the coroutine API, the command line's small-file path) refuses a key for a
passphrase file, and the other way round, with the same words.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from kstream.errors import UsageError, option
from kstream.format import IV_SIZE, MAX_LOG2N, CipherSuite, Header
from kstream.keys.key import Key
from kstream.keys.passphrase import (
    DEFAULT_WORK_FACTOR,
    MAX_WORK_FACTOR,
    Derivations,
    PassphraseArg,
    check_work_factor,
    derive,
    new_params,
    passphrase_bytes,
    wipe,
)


class Secret:
    """What unlocks a run: a key, or a passphrase (or a function that returns one, so that
    the command line asks only once the header says the file needs a passphrase). A plain
    class, not a dataclass: see :mod:`kstream.format`."""

    __slots__ = ("key", "max_work_factor", "passphrase", "work_factor")

    def __init__(
        self,
        key: Key | None = None,
        passphrase: PassphraseArg | Derivations | None = None,
        work_factor: int = DEFAULT_WORK_FACTOR,
        max_work_factor: int = MAX_WORK_FACTOR,
    ) -> None:
        self.key = key
        self.passphrase = passphrase
        self.work_factor = work_factor
        self.max_work_factor = max_work_factor

    def __repr__(self) -> str:  # never the passphrase
        return f"<kstream Secret: {'key' if self.key is not None else 'passphrase'}>"


def make_secret(
    key: Key | None,
    passphrase: PassphraseArg | Derivations | None,
    work_factor: int | None = None,
    max_work_factor: int | None = None,
) -> Secret:
    """Check that exactly one of ``key`` and ``passphrase`` is given."""
    if (key is None) == (passphrase is None):
        raise UsageError("give exactly one of key= (a kstream.Key) and passphrase= (bytes or str)")
    if key is not None and not isinstance(key, Key):
        raise UsageError("key must be a kstream.Key (use Key.from_file or Key.generate)")
    if max_work_factor is not None and not 1 <= max_work_factor <= MAX_LOG2N:
        raise UsageError(
            f"{option('max_work_factor')}{max_work_factor} is no work factor a "
            f"kstream file can hold; give 1 to {MAX_LOG2N}"
        )
    return Secret(
        key,
        passphrase,
        DEFAULT_WORK_FACTOR if work_factor is None else work_factor,
        MAX_WORK_FACTOR if max_work_factor is None else max_work_factor,
    )


@contextlib.contextmanager
def unlocked(
    encrypt: bool, secret: Secret, header: Header | None, header_iv: bytes | None
) -> Iterator[tuple[Key, Header | None]]:
    """The key for this run and the header to use. A passphrase is derived into a key
    (and the key wiped when the run ends); a key is refused for a passphrase file and the
    other way round, naming what the file needs."""
    if secret.key is not None:
        if not encrypt and header is not None and header.kdf is not None:
            raise UsageError(
                "this file is protected by a passphrase, not a key: give the "
                f"passphrase with {option('passphrase')}"
            )
        if encrypt and header is None and header_iv is not None:
            header = Header(suite=secret.key.suite, iv=header_iv)
        yield secret.key, header
        return
    assert secret.passphrase is not None
    shared = secret.passphrase if isinstance(secret.passphrase, Derivations) else None
    if encrypt:
        if header is None:
            iv = header_iv if header_iv is not None else os.urandom(IV_SIZE)
            header = Header(
                suite=CipherSuite.AES_256_CTR,
                iv=iv,
                kdf=(
                    new_params(secret.work_factor) if shared is None else shared.encryption_params()
                ),
            )
    elif header is None:
        raise UsageError(
            "a passphrase needs a kstream file's header (it holds the salt); raw mode takes a key"
        )
    elif header.kdf is None:
        raise UsageError(
            "this file was encrypted with a key, not a passphrase: give the "
            f"key with {option('key')}"
        )
    else:
        check_work_factor(header.kdf, secret.max_work_factor)
    if header.kdf is None:
        raise UsageError("a passphrase run needs a header with a passphrase block")
    if shared is not None:  # many files: one derivation per salt, wiped by the run's owner
        yield shared.key_for(header.kdf), header
        return
    assert not isinstance(secret.passphrase, Derivations)
    phrase = passphrase_bytes(secret.passphrase)
    try:
        # scrypt's memory is freed before streaming
        key = derive(phrase, header.kdf, encrypting=encrypt)
    finally:
        wipe(phrase)
    try:
        yield key, header
    finally:
        key.wipe()
