"""The body of a kstream file, and the one codec that turns segments into it and back.

Encrypt-then-MAC over the AES-CTR ciphertext. The ciphertext is cut into segments of S
bytes (the header's auth parameter); only the last segment is shorter, and it may be empty,
so every file ends with a segment flagged last. Each segment is written as::

    u32 big-endian   (LAST << 31) | ciphertext length
    ciphertext       S bytes, or 0..S-1 bytes for the last segment
    tag              16 bytes: GMAC (NIST SP 800-38D: AES-GCM with an empty plaintext)
                     over the ciphertext as associated data

The GMAC key is per file: HKDF-SHA256-Expand (RFC 5869) with the user's key as PRK and, as
info, a fixed label followed by the complete header (which holds the random IV): its 32
fixed bytes and, in a passphrase file, the passphrase block with the KDF's parameters and
salt, so a changed parameter or salt fails at segment 0 like any other header change.
The nonce is the segment index (11 bytes, big-endian) followed by the last flag (1 byte).
So each tag binds:

- the complete header (through the key: another header gives another key),
- the segment index and the last flag (through the nonce, which a key never sees twice),
- the segment's ciphertext and its length (GMAC's input and its length block).

The user's key keys exactly two functions: AES, for the AES-CTR of the body, and
HMAC-SHA256, for the one HKDF-Expand step that derives the MAC key (HMAC-SHA256(key, info ||
01)), so that the kernel can compute it for a key that stays in its keyring. The MAC key
keys only GMAC. Why that reuse is sound: docs/format.md, "Keys: what is keyed with what".
Decryption checks a segment's tag before releasing any of its plaintext.

The codec (:class:`SealCodec`, :class:`OpenCodec`, :class:`RawCodec`) is the only code that
applies this format. Every driver (a pipe, an async iterable, file ranges in parallel) reads
one segment at a time into a buffer and calls ``process``; a read shorter than the codec's
``unit`` means the input has ended. Because a file's last segment is always shorter than S,
that one rule lets the opener tell an intact end from truncation or appended data, with the
same message whichever driver runs it.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from kstream.backends.base import BLOCK, CipherStream, IntoStream
from kstream.errors import FormatError, IntegrityError, library_errors
from kstream.format import FRAME_SIZE, OVERHEAD, TAG_SIZE, Header, truncation

if TYPE_CHECKING:
    from kstream.keys.key import Key

_FRAME = struct.Struct(">I")
assert _FRAME.size == FRAME_SIZE
_LAST = 1 << 31
#: HKDF info label; the complete header follows it.
MAC_KEY_LABEL = b"kstream v1 segment MAC key: GMAC-AES-256\x00"

Buffer = bytes | bytearray | memoryview
#: What a codec returns for one segment: buffers to write, in order.
Buffers = list[Buffer]


# --- the per-file MAC key -------------------------------------------------------------------------


def mac_key_info(header: Header) -> bytes:
    """HKDF-Expand's input after the key: label, complete header, and the block counter 1.

    K_mac = HMAC-SHA256(key, mac_key_info(header)), which is HKDF-Expand (RFC 5869 2.3)
    with the user's key as PRK and L = 32. The Extract step is skipped as RFC 5869 3.3
    allows for keys that are already uniformly random, and so that the derivation is one
    HMAC keyed by the user's key: the kernel can compute it from a keyring key that user
    space never sees (an AF_ALG ``hmac(sha256)`` socket keyed by serial).
    """
    return MAC_KEY_LABEL + header.encode() + b"\x01"


def _expand(key_bytes: bytes, header: Header) -> bytes:
    hkdf = HKDFExpand(algorithm=SHA256(), length=32, info=MAC_KEY_LABEL + header.encode())
    return hkdf.derive(key_bytes)


def derive_mac(key_bytes: bytes, header: Header) -> AESGCM:
    """The per-file GMAC instance for ``header``'s file (the header carries the IV)."""
    return AESGCM(_expand(key_bytes, header))


def derive_mac_key(key: Key, header: Header) -> bytes:
    """K_mac for ``header``'s file, whatever kind of key ``key`` is.

    For a key in the kernel keyring the HMAC runs in the kernel (an AF_ALG
    ``hmac(sha256)`` socket keyed by the key's serial), so the user's key never enters
    this process; only the 32-byte per-file K_mac does, which can authenticate this one
    file and reveals nothing about the AES key (HMAC is one-way). Otherwise it is
    HKDF-Expand in OpenSSL, which gives the same bytes.
    """
    ref = key.keyring_ref
    if ref is not None:
        from kstream.backends.kernel import kernel_hmac_sha256

        return kernel_hmac_sha256(ref, mac_key_info(header))
    return _expand(key.material(), header)


def mac_for_key(key: Key, header: Header) -> AESGCM:
    """The per-file GMAC instance for ``header``'s file, from any kind of key."""
    return AESGCM(derive_mac_key(key, header))


# --- frames and tags ------------------------------------------------------------------------------


def _nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def seal_parts(mac: AESGCM, index: int, last: bool, ciphertext: Buffer) -> tuple[bytes, bytes]:
    """The frame word that goes before segment ``index``'s ciphertext, and its tag."""
    frame = _FRAME.pack((_LAST if last else 0) | len(ciphertext))
    with library_errors("openssl"):  # GMAC is OpenSSL's whatever the backend
        return frame, mac.encrypt(_nonce(index, last), b"", ciphertext)


def auth_failure(index: int, unlocked_by: str = "key") -> IntegrityError:
    """``unlocked_by`` is what unlocked the file, ``key`` or ``passphrase``: the likelier cause
    while no segment has verified."""
    return IntegrityError(
        f"authentication failed: wrong {unlocked_by} or the file was modified (segment {index})"
    )


def modified_at(index: int, first: int, last: int, unlocked_by: str = "key") -> IntegrityError:
    """The failure of segment ``index`` (file bytes ``first`` to ``last``) after segment 0
    verified: the per-file MAC key is then right, and so are the key and the header it is
    derived from; only this segment can be wrong. Saying "wrong key" here would send the
    user looking for another key instead of another copy of the file."""
    return IntegrityError(
        f"authentication failed: the file was modified at segment {index} (bytes {first} to "
        f"{last} of the file); the {unlocked_by} is right: segment 0 verified with it"
    )


class KeyProof:
    """Whether segment 0 of the file being opened has verified, shared by every codec of one
    run: parallel ranges each have their own codec, and a range that starts at segment 5 only
    knows the key is right because the range that verified segment 0 said so. (Ranges after
    the first start only once segment 0 went through its codec, so the answer is in by then.)
    """

    def __init__(self) -> None:
        self.verified = False


def parse_frame(
    data: Buffer, offset: int, segment: int, index: int, unlocked_by: str = "key"
) -> tuple[bool, int]:
    """``(last, ciphertext length)`` of the segment whose frame word is at ``offset``.

    A length no writer produces (over S, or short but not last) is a modified file.
    """
    (word,) = _FRAME.unpack_from(data, offset)
    last, size = bool(word & _LAST), word & ~_LAST
    if size > segment or (not last and size != segment):
        raise auth_failure(index, unlocked_by)
    return last, size


def check_tag(
    mac: AESGCM, index: int, last: bool, ciphertext: Buffer, tag: Buffer, unlocked_by: str = "key"
) -> None:
    """Raise :class:`IntegrityError` unless ``tag`` authenticates segment ``index``."""
    with library_errors("openssl"):  # GMAC is OpenSSL's whatever the backend
        try:
            mac.decrypt(_nonce(index, last), tag, ciphertext)
        except InvalidTag as exc:
            raise auth_failure(index, unlocked_by) from exc


class SegmentCheck:
    """The checks of one file's segments, worded as ``decrypt`` words them: for a reader
    that reads segments in parts, where the file's layout says they are (a frame word, the
    ciphertext, a tag), and keeps the ciphertext (:mod:`kstream.fileobj.body`)."""

    def __init__(
        self,
        mac: AESGCM,
        segment: int,
        unlocked_by: str = "key",
        *,
        proof: KeyProof | None = None,
        body_start: int = 0,
    ) -> None:
        self.mac, self.segment, self.unit = mac, segment, segment + OVERHEAD
        self.unlocked_by = unlocked_by
        self.proof = proof if proof is not None else KeyProof()
        self.body_start = body_start

    @contextlib.contextmanager
    def checking(self, index: int, n: int) -> Iterator[None]:
        """Around the checks of segment ``index`` (``n`` bytes of it at hand): once segment
        0 verified, a failure is worded as a modification of this segment
        (:func:`modified_at`); segment 0 passing proves the key (:class:`KeyProof`)."""
        try:
            yield
        except IntegrityError as exc:
            if not self.proof.verified:
                raise
            first = self.body_start + index * self.unit
            raise modified_at(
                index, first, first + min(n, self.unit) - 1, self.unlocked_by
            ) from exc
        if index == 0:
            self.proof.verified = True

    def parts(self, index: int, last: bool, frame: Buffer, ciphertext: Buffer, tag: Buffer) -> None:
        """Raise :class:`IntegrityError` unless segment ``index`` verifies: its frame word
        frames it as the layout does (the last segment or not, ``len(ciphertext)`` bytes),
        and its tag authenticates it."""
        with self.checking(index, len(ciphertext) + OVERHEAD):
            final, size = parse_frame(frame, 0, self.segment, index, self.unlocked_by)
            if final != last or size != len(ciphertext):
                raise auth_failure(index, self.unlocked_by)
            check_tag(self.mac, index, final, ciphertext, tag, self.unlocked_by)


# --- the codec ------------------------------------------------------------------------------------


class Codec(Protocol):
    """Turns one segment of input into the buffers to write.

    ``process(view, n, last)``: the input is ``view[:n]``, which the codec only reads;
    ``n < unit`` means the input ended there, and then ``last`` is true. The buffers
    returned may point into ``view`` or into the codec's own output buffer: write them
    before the next call, and before ``view`` is reused.
    """

    #: Input bytes per segment: S to encrypt, S + OVERHEAD to open.
    unit: int
    #: The index of the next segment (a parallel range starts past 0).
    index: int
    cipher: CipherStream

    def process(self, view: memoryview, n: int, last: bool) -> Buffers: ...


def apply_cipher(cipher: CipherStream, data: memoryview, out: memoryview, last: bool) -> Buffer:
    """``data`` through ``cipher``: into ``out`` (a buffer of its own, never overlapping
    ``data``, with ``BLOCK`` bytes to spare) when the cipher can write into a caller's
    buffer, else into new bytes.

    ``last`` ends the cipher stream. A non-final call must return all of its input: the
    segment size is a multiple of the AES block, so no cipher holds bytes back there.
    """
    if isinstance(cipher, IntoStream):
        n = cipher.update_into(data, out)
        if last:
            cipher.finalize()
        return out[:n]
    result = cipher.update(data)
    if last:
        result += cipher.finalize()
    elif len(result) != len(data):
        raise RuntimeError(
            f"{cipher.description} held back {len(data) - len(result)} bytes "
            "of a whole number of blocks"
        )
    return result


class _Room:
    """A codec's one output buffer, made at its first segment and reused for every one
    after: the cipher writes into it rather than over its input (OpenSSL's ``update_into``
    must not be given overlapping buffers), without a new allocation per segment. Only a
    cipher that writes into a caller's buffer uses it, so a kernel run never makes one."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._view: memoryview | None = None

    def view(self) -> memoryview:
        if self._view is None:
            self._view = memoryview(bytearray(self.size))
        return self._view


class RawCodec:
    """Bare CTR (``--raw``): no frames, no tags; segments only bound the work per hop."""

    def __init__(self, cipher: CipherStream, unit: int, first_index: int = 0) -> None:
        self.cipher, self.unit, self.index = cipher, unit, first_index
        self._room = _Room(unit + BLOCK)

    def process(self, view: memoryview, n: int, last: bool) -> Buffers:
        self.index += 1
        return [apply_cipher(self.cipher, view[:n], self._room.view(), last)]

    def process_pieces(self, pieces: Sequence[Buffer], n: int, last: bool) -> bytearray:
        """The ciphertext of ``pieces`` (``n`` bytes in all) in one new buffer."""
        out = bytearray(n + BLOCK)
        with memoryview(out) as view:
            _pieces_into(self.cipher, pieces, n, view, last)
        del out[n:]
        self.index += 1
        return out


class SealCodec:
    """Encryption: one authenticated segment per call."""

    def __init__(
        self, cipher: CipherStream, mac: AESGCM, segment: int, first_index: int = 0
    ) -> None:
        self.cipher, self.mac, self.unit = cipher, mac, segment
        self.index = first_index
        self._room = _Room(OVERHEAD + segment + BLOCK)

    def seal(self, ciphertext: Buffer, last: bool) -> Buffers:
        """Frame and tag one segment of ciphertext (for drivers whose cipher pulls its
        input itself, such as the kernel's splice and sendfile)."""
        frame, tag = seal_parts(self.mac, self.index, last, ciphertext)
        self.index += 1
        return [frame, ciphertext, tag]

    def process(self, view: memoryview, n: int, last: bool) -> Buffers:
        if not isinstance(self.cipher, IntoStream):  # new bytes: no output buffer needed
            return self.seal(apply_cipher(self.cipher, view[:n], view, last), last)
        out = self._room.view()
        self._frame_into(out, n, last, (view[:n],))
        return [out[: OVERHEAD + n]]

    def process_pieces(self, pieces: Sequence[Buffer], n: int, last: bool) -> bytearray:
        """One sealed segment (frame, ciphertext of ``pieces``, tag) in one new buffer: the
        input is read once, by the cipher, and nothing is copied after it."""
        out = bytearray(OVERHEAD + n + BLOCK)
        with memoryview(out) as view:
            self._frame_into(view, n, last, pieces)
        del out[OVERHEAD + n :]
        return out

    def _frame_into(self, view: memoryview, n: int, last: bool, pieces: Iterable[Buffer]) -> None:
        """Frame word, ciphertext of ``pieces`` (``n`` bytes) and tag, from ``view[0]`` on."""
        _pieces_into(self.cipher, pieces, n, view[FRAME_SIZE:], last)
        with view[FRAME_SIZE : FRAME_SIZE + n] as ciphertext:
            frame, tag = seal_parts(self.mac, self.index, last, ciphertext)
        view[:FRAME_SIZE] = frame
        view[FRAME_SIZE + n : OVERHEAD + n] = tag
        self.index += 1


def _pieces_into(
    cipher: CipherStream, pieces: Iterable[Buffer], n: int, out: memoryview, last: bool
) -> None:
    """Encrypt ``pieces`` (``n`` bytes in all) one after another into ``out`` (room for all,
    plus BLOCK); ``last`` ends the cipher stream.

    The caller's pieces need not be whole blocks, and a cipher without ``update_into`` (the
    kernel's) may hold a partial block back until the next piece: its output is placed where
    the previous output ended, and only the segment as a whole must come out complete.
    """
    offset = 0
    for piece in pieces:
        if isinstance(cipher, IntoStream):
            cipher.update_into(piece, out[offset:])
            offset += len(piece)
        else:
            data = cipher.update(piece)
            out[offset : offset + len(data)] = data
            offset += len(data)
    if last:
        data = cipher.finalize()
        out[offset : offset + len(data)] = data
        offset += len(data)
    if offset != n:
        raise RuntimeError(
            f"{cipher.description} held back {n - offset} bytes of a whole number of blocks"
        )


class OpenCodec:
    """Decryption: checks one segment's frame and tag, then releases its plaintext.

    Raises :class:`IntegrityError` for a segment that fails authentication (naming it) and
    :class:`FormatError` for truncation or data after the last segment, before anything of
    that segment is released.
    """

    def __init__(
        self,
        cipher: CipherStream,
        mac: AESGCM,
        segment: int,
        first_index: int = 0,
        unlocked_by: str = "key",
        *,
        proof: KeyProof | None = None,
        body_start: int = 0,
    ) -> None:
        self.cipher, self.segment = cipher, segment
        self.unit = segment + OVERHEAD
        self.index = first_index
        self._room = _Room(segment + BLOCK)
        #: ``unlocked_by`` (``key``, or ``passphrase`` for a passphrase file) is named in
        #: authentication failures; ``proof`` is shared by the run's codecs (see
        #: :class:`KeyProof`); ``body_start`` (the header's size) gives the file offsets of
        #: a modified segment.
        self._check = SegmentCheck(mac, segment, unlocked_by, proof=proof, body_start=body_start)

    def process(self, view: memoryview, n: int, last: bool) -> Buffers:
        index, check = self.index, self._check
        if n < FRAME_SIZE:
            raise truncation(index, n)
        with check.checking(index, n):
            final, size = parse_frame(view, 0, self.segment, index, check.unlocked_by)
            end = FRAME_SIZE + size + TAG_SIZE
            if n < end:
                raise truncation(index, n)
            ciphertext = view[FRAME_SIZE : FRAME_SIZE + size]
            check_tag(
                check.mac, index, final, ciphertext, view[end - TAG_SIZE : end], check.unlocked_by
            )
        if final and n > end:
            raise FormatError(
                "trailing data after the end of the encrypted file: "
                f"{n - end} or more bytes were appended"
            )
        self.index += 1
        return [apply_cipher(self.cipher, ciphertext, self._room.view(), final)]
