"""``--verify``: check every byte a cipher stream produces against OpenSSL.

The kernel's crypto drivers are the point of kstream, and also the part kstream cannot see
into; so on request each output byte is compared with an independent OpenSSL computation for
the same key and counter. The two streams may release output at different moments (the
kernel keeps a partial block back while the stream is open), so the reference output is
buffered and compared as the primary's output arrives.
"""

from __future__ import annotations

from kstream.backends.base import CipherStream
from kstream.errors import IntegrityError


class VerifyingStream:
    """Wraps a primary stream and a reference stream fed the same input."""

    def __init__(self, primary: CipherStream, reference: CipherStream) -> None:
        self._primary = primary
        self._reference = reference
        self._pending = bytearray()  # reference output not yet matched by the primary
        self._offset = 0  # stream offset of the first pending byte
        self.description = f"{primary.description}, verified against {reference.description}"

    def _check(self, produced: bytes, expected: bytes) -> bytes:
        self._pending += expected
        n = len(produced)
        if n > len(self._pending):
            raise IntegrityError(
                f"verification failed: {self._primary.description} produced more output than "
                f"its input allows at byte offset {self._offset + len(self._pending)}"
            )
        if produced != self._pending[:n]:
            first = next(i for i in range(n) if produced[i] != self._pending[i])
            raise IntegrityError(
                f"verification failed: {self._primary.description} disagrees with "
                f"{self._reference.description} at byte offset {self._offset + first}"
            )
        del self._pending[:n]
        self._offset += n
        return produced

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        expected = self._reference.update(data)
        return self._check(self._primary.update(data), expected)

    def finalize(self) -> bytes:
        expected = self._reference.finalize()
        out = self._check(self._primary.finalize(), expected)
        if self._pending:
            raise IntegrityError(
                f"verification failed: {self._primary.description} stopped short at byte "
                f"offset {self._offset}"
            )
        return out

    def close(self) -> None:
        try:
            self._primary.close()
        finally:
            self._reference.close()
