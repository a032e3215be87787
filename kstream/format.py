"""The kstream file header: encoding and parsing only, no I/O and no cryptography.

Layout of format version 1 (32 bytes, all integers big-endian)::

    offset  size  field
         0     8  magic          b"KSTREAM\x1a"
         8     1  version        1
         9     1  cipher suite   1 = AES-128-CTR, 2 = AES-192-CTR, 3 = AES-256-CTR
        10     1  flags          0, or 0x01: a passphrase block follows (any other bit is
                                 refused)
        11     1  auth scheme    1 = GMAC-AES-256 over segments (0 = none, refused)
        12     4  auth parameter the segment size S in bytes (scheme 1)
        16    16  IV             the initial 128-bit counter block, fresh per file

With flag 0x01 (the key is derived from a passphrase) a 20-byte passphrase block follows
at offset 32, and the header is 52 bytes::

        32     1  KDF id         1 = scrypt (RFC 7914)
        33     1  log2 N         scrypt's cost parameter N = 2^log2N (the work factor)
        34     1  r              scrypt's block size (kstream writes 8; readers take 1..8)
        35     1  p              scrypt's parallelism (kstream writes 1; readers take only 1)
        36    16  salt           16 fresh random bytes per file

The block is part of the header everywhere the header counts: in the per-file MAC key's
derivation (``kstream.segments``), so a changed salt or parameter fails at segment 0.

The body is AES-CTR of the plaintext, counter starting at the IV, cut into segments of S
ciphertext bytes, each framed with a length word and followed by a 16-byte tag (see
``kstream.segments``). With the framing stripped, ``openssl enc -d -aes-N-ctr -K KEY -iv IV``
decrypts the body.

The auth scheme is an explicit field so that a second scheme can be added later: a reader
that does not know a scheme says precisely that ("needs a newer kstream") instead of a
misleading "corrupt file".
"""

# No ``from __future__ import annotations`` in this module: typing.NamedTuple would turn its
# fields' annotations, then strings, into ForwardRefs, each compiled at import, and the first
# compile() in a process (it builds the ast module's types) costs more start-up time than a
# small file takes to encrypt. Names defined later are quoted instead.

import enum
import struct
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, Self

from kstream.errors import FormatError, option

MAGIC = b"KSTREAM\x1a"
VERSION = 1
IV_SIZE = 16
_FIXED = struct.Struct(">8sBBBBI16s")
HEADER_SIZE = _FIXED.size  # 32: the fixed header; a passphrase block may follow it

#: Header flag: a passphrase block (:class:`KdfParams`) follows the fixed header.
FLAG_PASSPHRASE = 0x01
KDF_SCRYPT = 1
SALT_SIZE = 16
_KDF = struct.Struct(">BBBB16s")
KDF_BLOCK_SIZE = _KDF.size  # 20
#: scrypt parameters a reader accepts besides the work factor (which the caller caps): the
#: work factor alone then bounds the cost, at most 128 * 8 * 2^log2N bytes of memory.
MAX_SCRYPT_R = 8
SCRYPT_P = 1
#: The largest log2 N a file can hold (RFC 7914 wants N < 2^(16 * r), and r <= 8).
MAX_LOG2N = 16 * MAX_SCRYPT_R - 1


#: Segment sizes a reader accepts: whole AES blocks, at least one block, and at most 4 MiB.
#: S comes from the header, which nothing has authenticated when the first segment buffer
#: is allocated, so the cap is what bounds a reader's memory against a crafted file: 4 MiB
#: leaves room above the 1008 KiB kstream writes (about 4x) while a few buffers of the
#: largest accepted S stay far below the 64 MiB that a run is allowed (docs/format.md).
MIN_SEGMENT = 16
MAX_SEGMENT = 4 << 20
#: The segment size kstream writes: 16 x 63 KiB = 1008 KiB (why: docs/format.md).
DEFAULT_SEGMENT = 16 * 64512


class AuthScheme(enum.IntEnum):
    """How the body is authenticated; the auth parameter's meaning depends on it."""

    NONE = 0
    GMAC_SEGMENTS = 1

    @property
    def label(self) -> str:
        return {0: "none", 1: "GMAC-AES-256 per segment"}[self.value]


class CipherSuite(enum.IntEnum):
    """Cipher suite identifiers stored in the header; the key size selects the suite."""

    AES_128_CTR = 1
    AES_192_CTR = 2
    AES_256_CTR = 3

    @property
    def key_size(self) -> int:
        """Key length in bytes that this suite requires."""
        return {1: 16, 2: 24, 3: 32}[self.value]

    @property
    def label(self) -> str:
        """Human-readable name, e.g. ``AES-256-CTR``."""
        return f"AES-{self.key_size * 8}-CTR"

    @classmethod
    def for_key_size(cls, size: int) -> "CipherSuite":
        """The suite for a key of ``size`` bytes (16, 24 or 32)."""
        for suite in cls:
            if suite.key_size == size:
                return suite
        raise ValueError(f"no AES-CTR suite for a {size}-byte key")


# The records are NamedTuples, not dataclasses: every encryption and decryption imports this
# module, and ``dataclasses`` (with the ``inspect`` it imports) costs more start-up time than
# a small file takes to encrypt. A record that checks its fields does so in ``__new__`` of a
# subclass of its fields.
class _KdfFields(NamedTuple):
    log2n: int
    salt: bytes
    r: int = 8
    p: int = 1
    kdf: int = KDF_SCRYPT


class KdfParams(_KdfFields):
    """How a passphrase becomes the file's key: scrypt's parameters and the file's salt.

    Only parameters; deriving is :mod:`kstream.keys.passphrase`'s job. Equal parameters (salt
    included) derive the same key from the same passphrase, so the object can key a cache.
    """

    __slots__ = ()

    def __new__(
        cls, log2n: int, salt: bytes, r: int = 8, p: int = 1, kdf: int = KDF_SCRYPT
    ) -> "KdfParams":
        if len(salt) != SALT_SIZE:
            raise ValueError(f"salt must be {SALT_SIZE} bytes, got {len(salt)}")
        if not (
            1 <= r <= MAX_SCRYPT_R and p == SCRYPT_P and 1 <= log2n < 16 * r
        ):  # RFC 7914: N < 2^(128 * r / 8)
            raise ValueError(f"unsupported scrypt parameters log2 N = {log2n}, r = {r}, p = {p}")
        return super().__new__(cls, log2n, salt, r, p, kdf)

    @classmethod
    def _make(cls, iterable: Iterable[Any]) -> Self:  # type: ignore[override]
        # NamedTuple's _make (and _replace, which calls it) would skip __new__'s checks.
        return cls(*iterable)

    @property
    def memory(self) -> int:
        """Bytes scrypt needs: 128 * r * N."""
        return 128 * self.r << self.log2n

    @property
    def label(self) -> str:
        return f"scrypt, log2 N = {self.log2n} (work factor), r = {self.r}, p = {self.p}"

    def encode(self) -> bytes:
        return _KDF.pack(self.kdf, self.log2n, self.r, self.p, self.salt)

    @classmethod
    def parse(cls, block: bytes) -> "KdfParams":
        kdf, log2n, r, p, salt = _KDF.unpack(block)
        if kdf != KDF_SCRYPT:
            raise FormatError(
                f"file uses key derivation function {kdf}, which this kstream "
                "does not support; the file is damaged or needs a newer kstream"
            )
        try:
            return cls(log2n=log2n, salt=salt, r=r, p=p, kdf=kdf)
        except ValueError as exc:
            raise FormatError(f"damaged header or a newer kstream's file: {exc}") from None


def header_size(fixed: bytes) -> int:
    """The size of the whole header that starts with ``fixed`` (its first 32 bytes or
    fewer): what a reader must read before it can parse it. Unknown flags are left to
    :meth:`Header.parse` to refuse."""
    if len(fixed) > 10 and fixed[10] & FLAG_PASSPHRASE:
        return HEADER_SIZE + KDF_BLOCK_SIZE
    return HEADER_SIZE


class _HeaderFields(NamedTuple):
    suite: CipherSuite
    iv: bytes
    version: int = VERSION
    flags: int = 0
    auth_scheme: AuthScheme = AuthScheme.GMAC_SEGMENTS
    auth_param: int = DEFAULT_SEGMENT
    #: The passphrase block: set exactly when ``flags`` has :data:`FLAG_PASSPHRASE`.
    kdf: KdfParams | None = None


class Header(_HeaderFields):
    """A parsed or to-be-written header. Validates its fields on construction."""

    __slots__ = ()

    def __new__(
        cls,
        suite: CipherSuite,
        iv: bytes,
        version: int = VERSION,
        flags: int = 0,
        auth_scheme: AuthScheme = AuthScheme.GMAC_SEGMENTS,
        auth_param: int = DEFAULT_SEGMENT,
        kdf: KdfParams | None = None,
    ) -> "Header":
        if len(iv) != IV_SIZE:
            raise ValueError(f"IV must be {IV_SIZE} bytes, got {len(iv)}")
        if kdf is not None:
            flags |= FLAG_PASSPHRASE
        if (kdf is None) != (not flags & FLAG_PASSPHRASE):
            raise ValueError("the passphrase flag needs a passphrase block")
        return super().__new__(cls, suite, iv, version, flags, auth_scheme, auth_param, kdf)

    @classmethod
    def _make(cls, iterable: Iterable[Any]) -> Self:  # type: ignore[override]
        # NamedTuple's _make (and _replace, which calls it) would skip __new__'s checks.
        return cls(*iterable)

    @property
    def size(self) -> int:
        """Bytes the header takes at the start of the file: 32, or 52 with a passphrase."""
        return HEADER_SIZE + (KDF_BLOCK_SIZE if self.kdf is not None else 0)

    def encode(self) -> bytes:
        """The complete header as written at the start of a file (passphrase block too)."""
        fixed = _FIXED.pack(
            MAGIC,
            self.version,
            int(self.suite),
            self.flags,
            self.auth_scheme,
            self.auth_param,
            self.iv,
        )
        return fixed + self.kdf.encode() if self.kdf is not None else fixed

    @classmethod
    def parse(cls, data: bytes) -> "Header":
        """Parse the first bytes of a file; ``data`` may be longer than the header.

        Raises :class:`FormatError` with a message specific to what is wrong, checked in
        the order a reader can know it: magic, version, truncation, suite, flags, scheme.
        """
        prefix = data[: len(MAGIC)]
        if prefix != MAGIC[: len(prefix)] or not prefix:
            raise FormatError(
                f"input is not a kstream file (bad magic); was it made with {option('raw')}?"
            )
        if len(data) < len(MAGIC) + 1:
            raise FormatError("file is truncated: the kstream header is incomplete")
        version = data[len(MAGIC)]
        if version != VERSION:
            raise FormatError(
                f"unsupported kstream format version {version} (this kstream reads version "
                f"{VERSION}); use a matching kstream release"
            )
        if len(data) < HEADER_SIZE:
            raise FormatError(
                f"file is truncated: the kstream header needs {HEADER_SIZE} bytes, "
                f"found {len(data)}"
            )
        _, version, suite_id, flags, scheme, param, iv = _FIXED.unpack_from(data)
        try:
            suite = CipherSuite(suite_id)
        except ValueError:
            raise FormatError(
                f"unknown cipher suite id {suite_id} in header; the file is damaged or "
                "needs a newer kstream"
            ) from None
        if flags & ~FLAG_PASSPHRASE:
            raise FormatError(
                f"header flags 0x{flags:02x} are not defined in format version {VERSION}; "
                "the file is damaged or needs a newer kstream"
            )
        try:
            auth = AuthScheme(scheme)
        except ValueError:
            raise FormatError(
                f"file uses authentication scheme {scheme}, which this kstream does not "
                "support; use a newer kstream"
            ) from None
        if auth is AuthScheme.NONE:
            raise FormatError(
                "file is not authenticated (auth scheme 0, written by a pre-release kstream); "
                "refusing it because changes to it could not be detected"
            )
        if not (MIN_SEGMENT <= param <= MAX_SEGMENT and param % 16 == 0):
            raise FormatError(
                f"damaged header: segment size {param} is not a multiple of 16 between "
                f"{MIN_SEGMENT} and {MAX_SEGMENT}"
            )
        kdf = None
        if flags & FLAG_PASSPHRASE:
            if len(data) < HEADER_SIZE + KDF_BLOCK_SIZE:
                raise FormatError(
                    f"file is truncated: the kstream header with its passphrase block needs "
                    f"{HEADER_SIZE + KDF_BLOCK_SIZE} bytes, found {len(data)}"
                )
            kdf = KdfParams.parse(data[HEADER_SIZE : HEADER_SIZE + KDF_BLOCK_SIZE])
            if suite is not CipherSuite.AES_256_CTR:
                raise FormatError(
                    f"damaged header: a passphrase file is AES-256-CTR, this "
                    f"header says {suite.label}"
                )
        return cls(
            suite=suite,
            iv=iv,
            version=version,
            flags=flags,
            auth_scheme=auth,
            auth_param=param,
            kdf=kdf,
        )


# --- the body's layout: sizes only (the codec that writes and checks it is kstream.segments) ---

#: Each segment is framed by a 4-byte length word before and a 16-byte GMAC tag after it.
FRAME_SIZE = 4
TAG_SIZE = 16
#: Bytes a segment gains when framed: the length word and the tag.
OVERHEAD = FRAME_SIZE + TAG_SIZE


def framed_size(plaintext_size: int, segment: int) -> int:
    """Body size of a file whose plaintext has ``plaintext_size`` bytes."""
    full = plaintext_size // segment
    return plaintext_size + (full + 1) * OVERHEAD


def plaintext_size(body_size: int, segment: int) -> int | None:
    """Inverse of :func:`framed_size`, or ``None`` if no plaintext size gives ``body_size``."""
    full, rest = divmod(body_size, segment + OVERHEAD)
    if rest < OVERHEAD:
        return None
    return full * segment + rest - OVERHEAD


def segment_count(body_size: int, segment: int) -> int | None:
    """The number of segments of an intact body of ``body_size`` bytes, else ``None``."""
    plain = plaintext_size(body_size, segment)
    return None if plain is None else plain // segment + 1


# --- the body's framing, checked without a key ----------------------------------------------------

_WORD = struct.Struct(">I")
#: The frame word's top bit: this segment is the file's last.
LAST_FLAG = 1 << 31


class BodyLayout(NamedTuple):
    """What the frame words of a well-framed body say: how many segments it has and how
    many plaintext bytes they hold. The tags are not checked: that needs the key."""

    segments: int
    plaintext: int


def truncation(index: int, left: int) -> FormatError:
    """The error for a body that ends ``left`` bytes into segment ``index``, before that
    segment is whole (0: where it should start): worded once for every reader of the
    format."""
    if left:
        return FormatError(f"file is truncated: segment {index} is incomplete")
    if index:
        return FormatError(
            f"file is truncated: it ends after segment {index - 1} without the final segment"
        )
    return FormatError("file is truncated: no segment follows the header")


def walk_frames(body_size: int, segment: int, word_at: Callable[[int], bytes]) -> BodyLayout:
    """Follow the frame words of a body of ``body_size`` bytes from segment to segment.

    ``word_at(offset)`` returns the 4 bytes at ``offset`` in the body; it is asked only for
    offsets where a segment starts (0, S + 20, 2 (S + 20), ...: every segment but the last
    is S bytes), so a regular file is read a few bytes per segment, and a stream can be
    read through once, keeping the first word of each ``S + 20``-byte unit.

    The size alone is no evidence: a truncated or appended-to body often still fits some
    plaintext size. The walk checks what decryption checks before any tag, in the same
    order and with the same words (:class:`kstream.segments.OpenCodec`), so ``inspect``
    and ``decrypt`` name the same defect; except that the walk knows the body's size, so
    appended data is counted exactly. Raises :class:`FormatError`.
    """
    index = offset = 0
    while True:
        left = body_size - offset
        if left < FRAME_SIZE:
            raise truncation(index, left)
        data = word_at(offset)
        if len(data) < FRAME_SIZE:  # the file shrank under us
            raise truncation(index, left)
        (word,) = _WORD.unpack_from(data)
        last, size = bool(word & LAST_FLAG), word & ~LAST_FLAG
        if not (size < segment if last else size == segment):  # only the last is short
            raise FormatError(
                f"file is damaged: segment {index} starts with length word 0x{word:08x}, "
                f"which no kstream writer produces (segments of {segment} bytes); the file "
                "was modified"
            )
        end = FRAME_SIZE + size + TAG_SIZE
        if left < end:
            raise truncation(index, left)
        if last:
            if left > end:
                extra = left - end
                raise FormatError(
                    "trailing data after the end of the encrypted file: "
                    f"{extra} byte{'s' if extra != 1 else ''} "
                    f"{'were' if extra != 1 else 'was'} appended"
                )
            return BodyLayout(index + 1, index * segment + size)
        offset += segment + OVERHEAD
        index += 1
