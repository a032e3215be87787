"""The body of one opened kstream file, read at random: where each segment is, decrypting
and checking the segments a read touches, and a small cache of the ones decrypted.

Format v1 puts segment ``i`` at ``H + i * (S + 20)`` (``H``, the header's size), holding
plaintext bytes ``[i * S, (i + 1) * S)``, and its counter block at ``IV + i * S / 16``: so
any plaintext range is a few segments that can be read, checked and decrypted on their own,
each by the plan's codec started at that segment (the same code, and so the same checks
and error messages, as ``kstream decrypt``).

The file's size gives its layout, and the layout's last segment must carry the last flag
under a tag that verifies: :meth:`Body.check_end` checks that when the file is opened, so
the plaintext size is authenticated before any byte is returned, and a truncated or
extended file, a changed header or another key's file is refused then. A segment's
plaintext is released only after its tag verified; a damaged segment fails the reads that
touch it and no others.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor

from kstream.errors import FormatError, IntegrityError, KstreamError
from kstream.fileobj.ends import Input
from kstream.format import (
    FRAME_SIZE,
    LAST_FLAG,
    OVERHEAD,
    Header,
    plaintext_size,
    walk_frames,
)
from kstream.segments import Codec

#: Decrypted segments kept by default: at the default segment size (1008 KiB) about 8 MiB,
#: enough for sequential reads in any read size and for the backward seeks of readers that
#: re-read a footer or an index (Parquet, zip).
DEFAULT_CACHE_SEGMENTS = 8

#: The plan's codec for a run of segments from the given one on (``Plan.codec``).
OpenCodecAt = Callable[[int], Codec]


class Body:
    """The segments of one kstream file whose header was parsed: random reads of the
    plaintext, thread-safe.

    ``cache_segments`` bounds memory: at most that many decrypted segments are kept (least
    recently used first out), plus, while reads run, one segment being decrypted per
    thread reading and, for a sequential reader, two decrypted ahead. ``decrypted`` counts
    segment decryptions (for tests and benchmarks).
    """

    def __init__(
        self,
        source: Input,
        header: Header,
        open_codec: OpenCodecAt,
        cache_segments: int = DEFAULT_CACHE_SEGMENTS,
        read_ahead: bool = False,
    ) -> None:
        if cache_segments < 1:
            raise ValueError("cache_segments must be at least 1")
        self.source = source
        self.header = header
        self.segment = header.auth_param
        self.unit = self.segment + OVERHEAD
        self._open_codec = open_codec
        self._capacity = cache_segments
        self._cache: OrderedDict[int, memoryview] = OrderedDict()
        self._lock = threading.Lock()
        #: Whether segment 0 verified: after that a failure is a modified segment, and
        #: the error says so in ``decrypt``'s words (:func:`kstream.segments.modified_at`).
        self._key_proven_at_0 = False
        self.decrypted = 0
        #: Whether sequential reads decrypt the next segment ahead (:meth:`_read_ahead`).
        self.read_ahead = read_ahead
        self._ahead: dict[int, Future[memoryview]] = {}
        self._worker: ThreadPoolExecutor | None = None
        self._next_offset = 0
        self.body_size = max(source.size - header.size, 0)
        plain = plaintext_size(self.body_size, self.segment)
        if plain is None:
            raise self._layout_error()
        #: The plaintext's size: authenticated once :meth:`check_end` has returned.
        self.size = plain
        self.count = plain // self.segment + 1

    # --- the layout ---------------------------------------------------------------------

    def _span(self, index: int) -> tuple[int, int]:
        """Where segment ``index`` starts in the file (from the header's first byte), and
        how many bytes it has there."""
        start = self.header.size + index * self.unit
        if index < self.count - 1:
            return start, self.unit
        return start, self.body_size - index * self.unit

    def _layout_error(self, cause: BaseException | None = None) -> FormatError | BaseException:
        """What ``decrypt`` would say about a body whose size or last segment does not fit:
        the frame words, followed from the start (a few bytes per segment), name the
        truncation or the appended bytes; a body they find intact fails with ``cause``."""

        def word_at(offset: int) -> bytes:
            return self.source.pread(self.header.size + offset, FRAME_SIZE)

        try:
            walk_frames(self.body_size, self.segment, word_at)
        except FormatError as exc:
            return exc
        return cause if cause is not None else FormatError("file is damaged")

    def check_end(self) -> None:
        """Decrypt and check the last segment (kept in the cache): its tag binds the last
        flag and its length, so the plaintext size is now authenticated, and with it the
        key and the header (both go into the MAC key).

        A last segment that is not framed as one (a file cut, or extended past its last
        segment) is reported in ``decrypt``'s words for what the frame words show; only
        then are they all read.
        """
        index = self.count - 1
        start, n = self._span(index)
        word = int.from_bytes(self.source.pread(start, FRAME_SIZE), "big")
        if word != LAST_FLAG | (n - OVERHEAD):
            raise self._layout_error(
                FormatError(f"file is damaged: segment {index} is not framed as the last one")
            )
        self.plaintext(index)

    # --- segments -----------------------------------------------------------------------

    def plaintext(self, index: int) -> memoryview:
        """Segment ``index``'s plaintext (read-only): from the cache, from the read-ahead,
        or decrypted now."""
        with self._lock:
            cached = self._cache.get(index)
            if cached is not None:
                self._cache.move_to_end(index)
                return cached
            pending = self._ahead.pop(index, None)
        data = None
        if pending is not None:
            # A failure is met again below, in this thread, and worded there.
            with contextlib.suppress(KstreamError, CancelledError):
                data = pending.result()
        if data is None:
            data = self._checked(index)
        with self._lock:
            self._cache[index] = data
            self._cache.move_to_end(index)
            while len(self._cache) > self._capacity:
                self._cache.popitem(last=False)
        return data

    def _checked(self, index: int) -> memoryview:
        try:
            return self._decrypt(index)
        except IntegrityError:
            if index == 0 or self._key_proven_at_0 or not self._segment_0_verifies():
                raise
            return self._decrypt(index)  # fails again, now in the words for a modified file

    def _read_ahead(self, offset: int, end: int) -> None:
        """After a read that started where the previous one ended (a sequential reader),
        decrypt the next segment not yet at hand in a background thread, so that fetching
        it overlaps the caller's work and the next read. At most two wait there; those a
        seek has left behind are dropped.

        Worth it where fetching a segment takes long (a network filesystem, an object
        store); on a local file the cipher holds the GIL and the handoff costs more than
        the overlap saves, hence off unless asked for."""
        sequential, self._next_offset = offset == self._next_offset, end
        if not (sequential and self.read_ahead):
            return
        first = end // self.segment
        with self._lock:
            wanted = {first, first + 1}
            for index in [i for i in self._ahead if i not in wanted]:
                self._ahead.pop(index).cancel()
            for index in sorted(wanted):
                if index >= self.count or index in self._cache or index in self._ahead:
                    continue
                if self._worker is None:
                    self._worker = ThreadPoolExecutor(1, thread_name_prefix="kstream-read-ahead")
                self._ahead[index] = self._worker.submit(self._decrypt, index)
                return

    def _segment_0_verifies(self) -> bool:
        """Check segment 0 (after another segment failed), so that the failure is worded
        as ``decrypt`` words it: as a wrong key only while segment 0 has not verified."""
        try:
            self.plaintext(0)
        except IntegrityError:
            return False
        return True

    def _decrypt(self, index: int) -> memoryview:
        start, n = self._span(index)
        data = self.source.pread(start, n)
        codec = self._open_codec(index)
        try:
            with memoryview(data) as view:
                out = codec.process(view, len(data), len(data) < codec.unit)
        finally:
            codec.cipher.close()
        self.decrypted += 1
        if index == 0:
            self._key_proven_at_0 = True
        buffer = out[0] if len(out) == 1 else b"".join(out)
        return memoryview(buffer).toreadonly()

    # --- reads ----------------------------------------------------------------------------

    def read_into(self, offset: int, out: memoryview) -> int:
        """Fill ``out`` with plaintext from ``offset``; the count, short only at the end.

        Every segment the range touches is checked before any of its bytes is copied; a
        segment that fails raises, and nothing of the read is returned.
        """
        end = min(offset + len(out), self.size)
        pos, written = offset, 0
        while pos < end:
            index = pos // self.segment
            segment = self.plaintext(index)
            first = pos - index * self.segment
            take = min(len(segment) - first, end - pos)
            out[written : written + take] = segment[first : first + take]
            written += take
            pos += take
        self._read_ahead(offset, end)
        return written

    def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` plaintext bytes at ``offset`` (fewer at the end, none past it)."""
        size = max(0, min(size, self.size - offset))
        if size == 0:
            return b""
        index = offset // self.segment
        if (offset + size - 1) // self.segment == index:  # one segment: one copy
            first = offset - index * self.segment
            data = bytes(self.plaintext(index)[first : first + size])
            self._read_ahead(offset, offset + size)
            return data
        parts, pos, end = [], offset, offset + size
        while pos < end:  # every segment checked before any byte is joined
            index = pos // self.segment
            first = pos - index * self.segment
            part = self.plaintext(index)[first : first + end - pos]
            parts.append(part)
            pos += len(part)
        self._read_ahead(offset, end)
        return b"".join(parts)

    def cached(self) -> list[int]:
        """The segments in the cache, least recently used first."""
        with self._lock:
            return list(self._cache)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            self._cache.clear()
            self._ahead.clear()
        self.source.close()
