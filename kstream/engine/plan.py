"""One run's plan: the backend (resolved once), the codec, and the driver that moves data.

Everything that depends on the user's choices is decided here, once per run, and handed
down as objects: the drivers never resolve a backend, and a parallel run opens one cipher
stream per range from the same backend object (for the kernel, one probe in all, not one per
range).
"""

# No ``from __future__ import annotations``: with it, typing compiles each NamedTuple
# field's annotation from a string, and the first compile() of a process costs more than a
# small file's encryption (tests/engine/test_small.py checks the path compiles nothing).

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import NamedTuple

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kstream.backends.base import BLOCK, Backend, CipherOptions, CipherStream, counter_add
from kstream.backends.openssl import OpenSSLBackend
from kstream.backends.select import choose_backend, prepared_key, select_backend
from kstream.engine.raw import check_raw
from kstream.errors import FormatError, InvalidKey, option, worded
from kstream.format import DEFAULT_SEGMENT, IV_SIZE, Header
from kstream.keys.key import Key
from kstream.keys.unlock import Secret, unlocked
from kstream.segments import (
    Codec,
    KeyProof,
    OpenCodec,
    RawCodec,
    SealCodec,
    SegmentCheck,
    mac_for_key,
)

Notify = Callable[[str], None]
Progress = Callable[[int], None]

NOTHING_TO_VERIFY = f"{option('verify')} has nothing to check: openssl is the reference"


def resolve_backend(
    key: Key | None, backend: str, notify: Notify, options: CipherOptions | None = None
) -> Backend:
    """The backend for a run over many files, resolved once for all of them (each file's
    plan takes the object: one kernel probe and one notice for the run, not per file).
    ``key`` is None for a passphrase, whose keys are plain keys."""
    if key is None:
        return select_backend(backend, notify, options)
    return choose_backend(key, backend, notify, options)


def parse_header(data: bytes) -> Header:
    """Parse the first bytes of a file (the whole header: see ``format.header_size``)."""
    if not data:
        raise FormatError("input is empty: not a kstream file")
    return Header.parse(data)


def check_header(data: bytes, key: Key) -> Header:
    """Parse the first bytes of a file and check that ``key`` fits its cipher suite."""
    header = parse_header(data)
    check_key_fits(header, key)
    return header


def check_key_fits(header: Header, key: Key) -> None:
    """Refuse a key whose size is not the one the file's cipher suite needs."""
    if header.suite.key_size != key.size:
        raise InvalidKey(
            f"the key is AES-{key.bits} ({key.size} bytes) but the file was encrypted with "
            f"{header.suite.label}; use the key the file was encrypted with"
        )


class RunOptions(NamedTuple):
    """How a run goes besides its secret and its data: one immutable record, made by the
    caller (the API, the command line) and read by :func:`planned`."""

    notify: Notify
    backend: str | Backend = "auto"
    options: CipherOptions | None = None
    verify: bool = False


class Plan(NamedTuple):
    """What one run does: which way, with which backend object, key, IV and segment size;
    complete and immutable once :func:`make_plan` has built it.

    ``header`` is None in raw mode (bare CTR: no header, no frames, no tags), and so is
    ``mac``. ``proof`` is shared by all of the run's openers: once segment 0 verified, a
    failure is a modified file, not a wrong key, whichever range meets it.
    """

    encrypt: bool
    key: Key
    backend: Backend
    iv: bytes
    header: Header | None
    options: CipherOptions | None
    verify: bool
    mac: AESGCM | None
    proof: KeyProof

    @property
    def segment(self) -> int:
        return self.header.auth_param if self.header is not None else DEFAULT_SEGMENT

    @property
    def prefix(self) -> bytes:
        """What precedes the body in the output: the header when encrypting a kstream file."""
        return self.header.encode() if self.encrypt and self.header is not None else b""

    def cipher(self, first_segment: int = 0) -> CipherStream:
        """A cipher stream whose counter starts at segment ``first_segment`` (see
        :meth:`cipher_at`)."""
        return self.cipher_at(first_segment * self.segment)

    def cipher_at(self, offset: int) -> CipherStream:
        """A cipher stream whose counter starts at plaintext byte ``offset`` (a multiple of
        the AES block), wrapped for ``--verify`` if asked.

        With a keyring key the ``verify`` reference cannot be OpenSSL (the key is not in this
        process): it is CTR built by kstream from the kernel's ``ecb(aes)`` under the same
        keyring key (:class:`~kstream.backends.kernel.ecb_ctr.KernelEcbCtrStream`).
        """
        if offset % BLOCK:
            raise ValueError(f"a cipher starts at a whole AES block, not at byte {offset}")
        iv = counter_add(self.iv, offset // BLOCK)
        stream = self.backend.open(self.key, iv, self.options)
        if not self.verify:
            return stream
        from kstream.backends.kernel import KernelEcbCtrStream  # only to verify the kernel
        from kstream.backends.verify import VerifyingStream

        try:
            ref = self.key.keyring_ref
            reference: CipherStream = (
                KernelEcbCtrStream(ref, iv)
                if ref is not None
                else OpenSSLBackend().open(self.key, iv)
            )
        except BaseException:
            stream.close()
            raise
        return VerifyingStream(stream, reference)

    def segment_check(self) -> SegmentCheck:
        """The checks of the segments of the kstream file this plan decrypts."""
        if self.encrypt or self.mac is None or self.header is None:
            raise ValueError("only the plan to decrypt a kstream file checks its segments")
        unlocked_by = "key" if self.header.kdf is None else "passphrase"
        return SegmentCheck(
            self.mac, self.segment, unlocked_by, proof=self.proof, body_start=self.header.size
        )

    def codec(self, first_segment: int = 0) -> Codec:
        """The codec for segments from ``first_segment`` on, with its own cipher stream."""
        cipher = self.cipher(first_segment)
        if self.mac is None:
            return RawCodec(cipher, self.segment, first_segment)
        if self.encrypt:
            return SealCodec(cipher, self.mac, self.segment, first_segment)
        assert self.header is not None  # a MAC comes with a header
        unlocked_by = "key" if self.header.kdf is None else "passphrase"
        return OpenCodec(
            cipher,
            self.mac,
            self.segment,
            first_segment,
            unlocked_by,
            proof=self.proof,
            body_start=self.header.size,
        )


def make_plan(
    *,
    encrypt: bool,
    key: Key,
    raw_iv: bytes | None,
    header: Header | None = None,
    backend: str | Backend = "auto",
    options: CipherOptions | None = None,
    verify: bool = False,
    notify: Notify,
) -> Plan:
    """Resolve the backend (once) and the per-file MAC. For encryption of a kstream file a
    header with 16 fresh random bytes from the OS CSPRNG as IV is made unless given (given
    only to reproduce published test vectors); to decrypt one, pass the file's header."""
    chosen = choose_backend(key, backend, notify, options)
    if verify and chosen.name == "openssl":
        notify(worded(NOTHING_TO_VERIFY))
        verify = False
    if raw_iv is not None:
        return Plan(encrypt, key, chosen, raw_iv, None, options, verify, None, KeyProof())
    if header is None:
        if not encrypt:
            raise ValueError("decrypting a kstream file needs its header")
        header = Header(suite=key.suite, iv=os.urandom(IV_SIZE))
    # The backend first (above): with a keyring key its errors (kernel too old, no
    # permission) are the ones to report, and the MAC derivation would meet the same ones.
    mac = mac_for_key(key, header)
    return Plan(encrypt, key, chosen, header.iv, header, options, verify, mac, KeyProof())


@contextlib.contextmanager
def planned(
    encrypt: bool,
    secret: Secret,
    run: RunOptions,
    *,
    raw_iv: bytes | None,
    header: Header | None,
    header_iv: bytes | None = None,
) -> Iterator[Plan]:
    """The plan for one run, with its key usable while the block runs (a passphrase's key
    is wiped when it ends). To decrypt a kstream file, pass its header; ``header_iv`` (and
    a ``header`` for encryption) exist only to reproduce published test vectors."""
    check_raw(raw_iv is not None, secret.key is not None)
    with (
        unlocked(encrypt, secret, header, header_iv) as (key, header),
        prepared_key(key, run.backend, run.notify) as key,
    ):
        if header is not None and not encrypt:
            check_key_fits(header, key)
        yield make_plan(
            encrypt=encrypt,
            key=key,
            raw_iv=raw_iv,
            header=header,
            backend=run.backend,
            options=run.options,
            verify=run.verify,
            notify=run.notify,
        )
