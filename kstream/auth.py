"""Authenticated segments: encrypt-then-MAC over the AES-CTR ciphertext.

The CTR ciphertext is cut into segments of S bytes (the header's auth parameter); only the
last segment is shorter, and it may be empty, so every file ends with a segment flagged
last. Each segment is written as::

    u32 big-endian   (LAST << 31) | ciphertext length
    ciphertext       S bytes, or 0..S bytes for the last segment
    tag              16 bytes: GMAC (NIST SP 800-38D: AES-GCM with an empty plaintext)
                     over the ciphertext as associated data

The GMAC key is per file: HKDF-SHA256-Expand (RFC 5869) with the user's key as PRK and, as
info, a fixed label followed by the complete 32-byte header (which holds the random IV).
The nonce is the segment index (11 bytes, big-endian) followed by the last flag (1 byte).
So each tag binds:

- the complete header (through the key: another header gives another key),
- the segment index and the last flag (through the nonce, which a key never sees twice),
- the segment's ciphertext and its length (GMAC's input and its length block).

The AES key itself is only ever used for AES-CTR; the MAC key is derived from it and is
never used for anything else. Decryption checks a segment's tag before releasing any of
its plaintext.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from kstream.backends.base import CipherStream, FdCipherStream
from kstream.errors import FormatError, IntegrityError
from kstream.format import Header

if TYPE_CHECKING:
    from kstream.keys import Key

TAG_SIZE = 16
_FRAME = struct.Struct(">I")
FRAME_SIZE = _FRAME.size
_LAST = 1 << 31
#: HKDF info label; the complete header follows it.
MAC_KEY_LABEL = b"kstream v1 segment MAC key: GMAC-AES-256\x00"


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


def _nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def seal_parts(
    mac: AESGCM, index: int, last: bool, ciphertext: bytes | bytearray | memoryview
) -> tuple[bytes, bytes]:
    """The frame word that goes before segment ``index``'s ciphertext, and its tag."""
    frame = _FRAME.pack((_LAST if last else 0) | len(ciphertext))
    return frame, mac.encrypt(_nonce(index, last), b"", ciphertext)


def auth_failure(index: int) -> IntegrityError:
    return IntegrityError(
        f"authentication failed: wrong key or the file was modified (segment {index})"
    )


def parse_frame(data: bytes | bytearray | memoryview, offset: int, segment: int,
                index: int) -> tuple[bool, int]:
    """``(last, ciphertext length)`` of the segment whose frame word is at ``offset``.

    A length no writer produces (over S, or short but not last) is a modified file.
    """
    (word,) = _FRAME.unpack_from(data, offset)
    last, size = bool(word & _LAST), word & ~_LAST
    if size > segment or (not last and size != segment):
        raise auth_failure(index)
    return last, size


def check_tag(mac: AESGCM, index: int, last: bool, ciphertext: bytes | bytearray | memoryview,
              tag: bytes | bytearray | memoryview) -> None:
    """Raise :class:`IntegrityError` unless ``tag`` authenticates segment ``index``."""
    try:
        mac.decrypt(_nonce(index, last), tag, ciphertext)
    except InvalidTag:
        raise auth_failure(index) from None


def framed_size(plaintext_size: int, segment: int) -> int:
    """Body size of a file whose plaintext has ``plaintext_size`` bytes."""
    full = plaintext_size // segment
    return plaintext_size + (full + 1) * (FRAME_SIZE + TAG_SIZE)


def plaintext_size(body_size: int, segment: int) -> int | None:
    """Inverse of :func:`framed_size`, or ``None`` if no plaintext size gives ``body_size``."""
    full, rest = divmod(body_size, segment + FRAME_SIZE + TAG_SIZE)
    if rest < FRAME_SIZE + TAG_SIZE:
        return None
    return full * segment + rest - FRAME_SIZE - TAG_SIZE


class _Segments:
    """What sealing and opening share: the cipher, the per-file MAC, the segment size, and
    the index of the next segment (``first_index`` for a parallel range)."""

    def __init__(
        self, cipher: CipherStream, mac: AESGCM, segment: int, first_index: int = 0
    ) -> None:
        self.cipher = cipher
        self.mac = mac
        self.segment = segment
        self._buf = bytearray()
        self._index = first_index
        self.description = cipher.description

    def close(self) -> None:
        self.cipher.close()


class SegmentSealer(_Segments):
    """Encrypts through ``cipher`` and frames and tags the ciphertext in segments."""

    def _seal(self, ciphertext: bytes | bytearray | memoryview, last: bool) -> bytes:
        frame, tag = seal_parts(self.mac, self._index, last, ciphertext)
        self._index += 1
        return b"".join((frame, ciphertext, tag))

    def _emit(self, ciphertext: bytes, final: bool) -> bytes:
        """Seal every whole segment now available; keep a partial one for later.

        Whole segments are sealed straight from ``ciphertext``; only the pieces of a
        segment that straddles two calls are copied into the buffer.
        """
        segment = self.segment
        out: list[bytes] = []
        with memoryview(ciphertext) as whole:
            view = whole
            if self._buf:
                take = min(segment - len(self._buf), len(view))
                self._buf += view[:take]
                view = view[take:]
                if len(self._buf) == segment:
                    out.append(self._seal(self._buf, last=False))
                    self._buf.clear()
            while len(view) >= segment:
                out.append(self._seal(view[:segment], last=False))
                view = view[segment:]
            self._buf += view
            view.release()
        if final:
            out.append(self._seal(self._buf, last=True))
            self._buf.clear()
        return b"".join(out)

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        return self._emit(self.cipher.update(data), final=False)

    def finalize(self) -> bytes:
        return self._emit(self.cipher.finalize(), final=True)

    def finish_range(self) -> bytes:
        """End a range of whole segments that is not the end of the file (parallel jobs)."""
        out = self._emit(self.cipher.finalize(), final=False)
        if self._buf:
            raise ValueError("a parallel range must end on a segment boundary")
        return out


class FdSegmentSealer(SegmentSealer):
    """A sealer whose cipher can pull input from a file descriptor (kernel splice/sendfile)."""

    cipher: FdCipherStream

    def __init__(
        self, cipher: FdCipherStream, mac: AESGCM, segment: int, first_index: int = 0
    ) -> None:
        super().__init__(cipher, mac, segment, first_index)

    def accepts_fd(self, fd: int) -> bool:
        return self.cipher.accepts_fd(fd)

    def update_from_fd(self, fd: int, max_bytes: int) -> tuple[bytes, int]:
        out, consumed = self.cipher.update_from_fd(fd, max_bytes)
        return self._emit(out, final=False), consumed


def sealer(
    cipher: CipherStream, mac: AESGCM, segment: int, first_index: int = 0
) -> SegmentSealer:
    """The right sealer for ``cipher`` (keeping its fd fast path when it has one)."""
    if isinstance(cipher, FdCipherStream):
        return FdSegmentSealer(cipher, mac, segment, first_index)
    return SegmentSealer(cipher, mac, segment, first_index)


class SegmentOpener(_Segments):
    """Checks each segment's tag, then decrypts it through ``cipher``.

    Raises :class:`IntegrityError` for a segment that fails authentication (naming it) and
    :class:`FormatError` for truncation or data after the last segment.
    """

    def __init__(
        self, cipher: CipherStream, mac: AESGCM, segment: int, first_index: int = 0
    ) -> None:
        super().__init__(cipher, mac, segment, first_index)
        self._done = False
        self._error: Exception | None = None

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        """Plaintext of the segments completed and verified so far.

        When a segment fails after others in the same call verified, their plaintext is
        still returned and the error is raised by the next call, so output stops exactly
        at the first bad segment.
        """
        if self._error is not None:
            raise self._error
        self._buf += data
        out: list[bytes] = []
        try:
            self._open_segments(out)
        except (FormatError, IntegrityError) as exc:
            if not out:
                raise
            self._error = exc
        return b"".join(out)

    def _open_segments(self, out: list[bytes]) -> None:
        start = 0
        with memoryview(self._buf) as view:
            while True:
                if self._done:
                    if len(view) > start:
                        raise FormatError(
                            "trailing data after the end of the encrypted file: "
                            f"{len(view) - start} or more bytes were appended"
                        )
                    break
                if len(view) - start < FRAME_SIZE:
                    break
                last, size = parse_frame(view, start, self.segment, self._index)
                end = start + FRAME_SIZE + size + TAG_SIZE
                if len(view) < end:
                    break
                ciphertext = view[start + FRAME_SIZE:end - TAG_SIZE]
                check_tag(self.mac, self._index, last, ciphertext, view[end - TAG_SIZE:end])
                out.append(self.cipher.update(ciphertext))
                ciphertext.release()  # so that the buffer can be trimmed below
                self._index += 1
                self._done = last
                start = end
        del self._buf[:start]

    def finalize(self) -> bytes:
        if self._error is not None:
            raise self._error
        if not self._done:
            if self._buf:
                raise FormatError(f"file is truncated: segment {self._index} is incomplete")
            raise FormatError(
                f"file is truncated: it ends after segment {self._index - 1} without the "
                "final segment" if self._index else "file is truncated: no segment follows "
                "the header"
            )
        return self.cipher.finalize()

    def finish_range(self) -> bytes:
        """End a range of whole segments that is not the end of the file (parallel jobs)."""
        if self._error is not None:
            raise self._error
        if self._done:
            raise FormatError("trailing data after the end of the encrypted file")
        if self._buf:
            raise FormatError(f"file is truncated: segment {self._index} is incomplete")
        return self.cipher.finalize()
