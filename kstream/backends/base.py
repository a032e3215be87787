"""The seam between kstream's pipeline and the code that actually runs AES-CTR.

A :class:`Backend` is a factory for :class:`CipherStream` objects. A cipher stream
encrypts (or, identically for CTR, decrypts) one continuous stream that starts at one IV:
the pipeline feeds it any number of ``update`` calls of any size and ends with
``finalize``. The concatenation of everything returned equals one-shot AES-CTR over the
concatenated input. A backend may hold back bytes between calls (the kernel only works on
whole 16-byte blocks while the stream is open) - callers must not assume that ``update``
returns as many bytes as it was given.

Calls on a stream are blocking and are made from a worker thread, never concurrently.
"""

# No ``from __future__ import annotations`` in this module: typing.NamedTuple would turn its
# fields' annotations, then strings, into ForwardRefs, each compiled at import, and the first
# compile() in a process (it builds the ast module's types) costs more start-up time than a
# small file takes to encrypt. Names defined later are quoted instead.

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol, runtime_checkable

if TYPE_CHECKING:
    from kstream.keys.key import Key

BLOCK = 16
#: Data is fed to ciphers in chunks of this size (63 KiB: fits the kernel's default socket
#: send buffer several times, and is a multiple of the AES block size).
CHUNK = 64512

Transfer = Literal["auto", "sendmsg", "splice", "sendfile"]
#: What ``--backend`` accepts (:mod:`kstream.backends.select` resolves it).
BACKEND_NAMES = ("auto", "kernel", "openssl")
#: What ``auto`` says when it falls back because the host has no usable AF_ALG (most
#: containers): on such a host it is said on every run, so it is one short line, and the
#: reason, which ``kstream backends`` explains in full, is left out. Here, not in
#: :mod:`kstream.backends.select`, so that the CLI can recognise it without importing that.
FALLBACK_NOTICE = "kernel backend unavailable here; using openssl (see 'kstream backends')"


# The records here are NamedTuples, not dataclasses: every run imports this module, and
# ``dataclasses`` (with the ``inspect`` it imports) costs more start-up time than a small
# file takes to encrypt.
class CipherOptions(NamedTuple):
    """Backend-specific choices made by the user; ignored where they do not apply."""

    driver: str | None = None
    transfer: Transfer = "auto"


class Availability(NamedTuple):
    """Whether a backend can run here and, in one line, why (not)."""

    name: str
    available: bool
    reason: str
    details: Mapping[str, object] = MappingProxyType({})


@runtime_checkable
class CipherStream(Protocol):
    """One AES-CTR keystream applied to one continuous byte stream."""

    @property
    def description(self) -> str:
        """What is doing the work, for messages and ``--verify`` reports (a driver name)."""
        ...

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        """Process ``data``; return the output that is ready (possibly less or more)."""
        ...

    def finalize(self) -> bytes:
        """End the stream and return all remaining output. No update may follow."""
        ...

    def close(self) -> None:
        """Release resources (sockets, contexts). Safe to call more than once."""
        ...


@runtime_checkable
class IntoStream(Protocol):
    """A cipher stream that can write its output into a caller's buffer (OpenSSL's
    ``update_into``). The buffer must not overlap the input: the cipher library does not
    promise in-place operation, and cryptography refuses overlapping buffers."""

    def update_into(
        self, data: bytes | bytearray | memoryview, out: bytearray | memoryview
    ) -> int: ...


@runtime_checkable
class FdCipherStream(CipherStream, Protocol):
    """A cipher stream that can pull its input straight from a file descriptor.

    The kernel backend implements this with ``splice`` (pipes) or ``sendfile`` (regular
    files) so the data does not pass through a Python buffer on its way in.
    """

    def update_from_fd(self, fd: int, max_bytes: int) -> tuple[bytes, int]:
        """Move up to ``max_bytes`` from ``fd`` into the cipher.

        Returns ``(output, consumed)``; ``consumed == 0`` means ``fd`` is at end of file.
        """
        ...

    def accepts_fd(self, fd: int) -> bool:
        """Whether ``update_from_fd`` should be used for this fd with the chosen transfer."""
        ...


class Backend(Protocol):
    """A provider of AES-CTR cipher streams."""

    name: str

    def probe(self) -> Availability:
        """Check, without side effects that matter, whether this backend works here."""
        ...

    def open(self, key: "Key", iv: bytes, options: CipherOptions | None = None) -> CipherStream:
        """A new cipher stream for ``key`` starting at counter block ``iv``.

        Raises :class:`kstream.errors.BackendUnavailable` when the backend cannot run,
        :class:`kstream.errors.InvalidKey` when the backend refuses the key.
        """
        ...


def counter_add(iv: bytes, blocks: int) -> bytes:
    """The counter block ``blocks`` positions after ``iv`` (128-bit big-endian, wrapping).

    This is how AES-CTR (NIST SP 800-38A, OpenSSL, the kernel's ``ctr``) advances: the whole
    16-byte block is one integer, so the counter wraps from ff..ff to 00..00.
    """
    value = (int.from_bytes(iv, "big") + blocks) % (1 << 128)
    return value.to_bytes(BLOCK, "big")
