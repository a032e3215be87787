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

from kstream.backends.base import BLOCK
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
from kstream.segments import OpenCodec

#: Decrypted segments kept by default: at the default segment size (1008 KiB) about 8 MiB,
#: enough for sequential reads in any read size and for the backward seeks of readers that
#: re-read a footer or an index (Parquet, zip).
DEFAULT_CACHE_SEGMENTS = 8

#: Spare buffers kept for the next segments, of each kind (ciphertext read, plaintext).
SPARE_BUFFERS = 2

#: The plan's codec for a run of segments from the given one on (``Plan.open_codec``).
OpenCodecAt = Callable[[int], OpenCodec]


class _Held:
    """A decrypted segment in the cache, and how many reads are copying out of it: its
    buffer goes back to the spares when it has been evicted and no read holds it."""

    __slots__ = ("evicted", "readers", "view")

    def __init__(self, view: memoryview) -> None:
        self.view = view
        self.readers = 0
        self.evicted = False


class Body:
    """The segments of one kstream file whose header was parsed: random reads of the
    plaintext, thread-safe.

    ``cache_segments`` bounds memory: at most that many decrypted segments are kept (least
    recently used first out), plus, while reads run, one segment being read and decrypted
    per thread reading, two read ahead for a sequential reader (``read_ahead``), and two
    spare buffers of each kind. ``decrypted`` counts segment decryptions (for tests and
    benchmarks).
    """

    def __init__(
        self,
        source: Input,
        header: Header,
        open_codec: OpenCodecAt,
        cache_segments: int = DEFAULT_CACHE_SEGMENTS,
        read_ahead: bool = True,
    ) -> None:
        if cache_segments < 1:
            raise ValueError("cache_segments must be at least 1")
        self.source = source
        self.header = header
        self.segment = header.auth_param
        self.unit = self.segment + OVERHEAD
        self._open_codec = open_codec
        self._capacity = cache_segments
        self._cache: OrderedDict[int, _Held] = OrderedDict()
        #: Buffers to reuse: for ciphertext read (``unit`` bytes) and plaintext made.
        self._inputs: list[bytearray] = []
        self._spare: list[bytearray] = []
        self._lock = threading.Lock()
        #: Whether segment 0 verified: after that a failure is a modified segment, and
        #: the error says so in ``decrypt``'s words (:func:`kstream.segments.modified_at`).
        self._key_proven_at_0 = False
        self.decrypted = 0
        #: Whether sequential reads fetch the next segments ahead (:meth:`_fetch_ahead`).
        self.read_ahead = read_ahead
        self._ahead: dict[int, Future[memoryview]] = {}
        self._worker: ThreadPoolExecutor | None = None
        self._next_offset = 0
        #: The codec of the last segment decrypted, kept for the one after it.
        self._codec: OpenCodec | None = None
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
        self._let_go(self._hold(index))

    # --- segments -----------------------------------------------------------------------

    def _hold(self, index: int, sequential: bool = False) -> _Held:
        """Segment ``index``'s plaintext, from the cache or decrypted now, held until
        :meth:`_let_go`: its buffer is not reused for another segment while held.
        ``sequential``: the reader reads on from here, so the next segments are fetched
        ahead while this one is decrypted."""
        with self._lock:
            held = self._cache.get(index)
            if held is not None:
                self._cache.move_to_end(index)
                held.readers += 1
                return held
            fetched = self._ahead.pop(index, None)
            if sequential:
                self._fetch_ahead(index + 1)
        held = _Held(self._checked(index, fetched))
        with self._lock:
            cached = self._cache.get(index)
            if cached is not None:  # another thread decrypted it meanwhile: keep theirs
                self._recycle(held.view)
                held = cached
            else:
                self._cache[index] = held
                while len(self._cache) > self._capacity:
                    _, old = self._cache.popitem(last=False)
                    old.evicted = True
                    if not old.readers:
                        self._recycle(old.view)
            self._cache.move_to_end(index)
            held.readers += 1
            return held

    def _let_go(self, held: _Held) -> None:
        with self._lock:
            held.readers -= 1
            if held.evicted and not held.readers:
                self._recycle(held.view)

    def _recycle(self, view: memoryview) -> None:
        """Keep the buffer under an evicted segment for the next one (under the lock)."""
        if isinstance(view.obj, bytearray) and len(self._spare) < SPARE_BUFFERS:
            self._spare.append(view.obj)

    def _give_back(self, spare: list[bytearray], buffer: object) -> None:
        with self._lock:
            if isinstance(buffer, bytearray) and len(spare) < SPARE_BUFFERS:
                spare.append(buffer)

    def _checked(self, index: int, fetched: Future[memoryview] | None = None) -> memoryview:
        try:
            return self._decrypt(index, fetched)
        except IntegrityError:
            if index == 0 or self._key_proven_at_0 or not self._segment_0_verifies():
                raise
            return self._decrypt(index)  # fails again, now in the words for a modified file

    def _sequential(self, offset: int, end: int) -> bool:
        """Whether a read of ``[offset, end)`` starts where the previous one ended. After
        a jump, the segments fetched ahead are dropped."""
        sequential, self._next_offset = offset == self._next_offset, end
        if not sequential and self._ahead:
            with self._lock:
                for index in list(self._ahead):
                    self._ahead.pop(index).cancel()
        return sequential and self.read_ahead

    def _fetch_ahead(self, index: int) -> None:
        """Start reading segments ``index`` and ``index + 1`` in a background thread, if
        they are not at hand (under the lock): a sequential reader's next segment is
        then read while this one is decrypted (a read releases the GIL; the cipher does
        not), and on a network filesystem or object store the wait overlaps the work."""
        for ahead in (index, index + 1):
            if ahead >= self.count or ahead in self._cache or ahead in self._ahead:
                continue
            if self._worker is None:
                self._worker = ThreadPoolExecutor(1, thread_name_prefix="kstream-read-ahead")
            self._ahead[ahead] = self._worker.submit(self._fetch, ahead)

    def _segment_0_verifies(self) -> bool:
        """Check segment 0 (after another segment failed), so that the failure is worded
        as ``decrypt`` words it: as a wrong key only while segment 0 has not verified."""
        try:
            self._let_go(self._hold(0))
        except IntegrityError:
            return False
        return True

    def _take(self, spare: list[bytearray], size: int) -> bytearray:
        with self._lock:
            if spare:
                return spare.pop()
        return bytearray(size)

    def _fetch(self, index: int) -> memoryview:
        """Segment ``index`` as it is in the file, in a buffer from ``_inputs``."""
        start, n = self._span(index)
        buffer = self._take(self._inputs, self.unit)
        view = memoryview(buffer)
        return view[: self.source.pread_into(start, view[:n])]

    def _decrypt(self, index: int, fetched: Future[memoryview] | None = None) -> memoryview:
        """Check and decrypt segment ``index`` (fetched ahead, or read now) into a buffer
        of the cache's own, outside the lock."""
        data = None
        if fetched is not None:
            # A failure is met again below, in this thread, and worded there.
            with contextlib.suppress(KstreamError, OSError, CancelledError):
                data = fetched.result()
        if data is None:
            data = self._fetch(index)
        buffer = self._take(self._spare, self.segment + BLOCK)
        with self._lock:  # the codec that ended where this segment starts, if free
            codec, self._codec = self._codec, None
        if codec is None or codec.index != index:
            if codec is not None:
                codec.cipher.close()
            codec = self._open_codec(index)
        try:
            last = len(data) < codec.unit
            out = codec.process(data, len(data), last, memoryview(buffer))
        except BaseException:
            codec.cipher.close()
            raise
        finally:
            self._give_back(self._inputs, data.obj)
        if last:
            codec.cipher.close()
        else:  # its counter is at the next segment's: a sequential reader's next decrypt
            with self._lock:
                codec, self._codec = self._codec, codec
            if codec is not None:
                codec.cipher.close()
        self.decrypted += 1
        if index == 0:
            self._key_proven_at_0 = True
        plain = out[0] if len(out) == 1 else b"".join(out)
        if not (isinstance(plain, memoryview) and plain.obj is buffer):
            self._give_back(self._spare, buffer)  # the cipher made new bytes (the kernel's)
        return memoryview(plain).toreadonly()

    # --- reads ----------------------------------------------------------------------------

    def read_into(self, offset: int, out: memoryview) -> int:
        """Fill ``out`` with plaintext from ``offset``; the count, short only at the end.

        Every segment the range touches is checked before any of its bytes is copied; a
        segment that fails raises, and nothing of the read is returned.
        """
        end = min(offset + len(out), self.size)
        sequential = self._sequential(offset, end)
        pos, written = offset, 0
        while pos < end:
            index = pos // self.segment
            held = self._hold(index, sequential)
            try:
                first = pos - index * self.segment
                take = min(len(held.view) - first, end - pos)
                out[written : written + take] = held.view[first : first + take]
            finally:
                self._let_go(held)
            written += take
            pos += take
        return written

    def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` plaintext bytes at ``offset`` (fewer at the end, none past it)."""
        size = max(0, min(size, self.size - offset))
        if size == 0:
            return b""
        held: list[_Held] = []
        parts, pos, end = [], offset, offset + size
        sequential = self._sequential(offset, end)
        try:
            while pos < end:  # every segment checked before any byte is joined
                index = pos // self.segment
                held.append(self._hold(index, sequential))
                first = pos - index * self.segment
                part = held[-1].view[first : first + end - pos]
                parts.append(part)
                pos += len(part)
            data = bytes(parts[0]) if len(parts) == 1 else b"".join(parts)
        finally:
            for one in held:
                self._let_go(one)
        return data

    def segment_rest(self, offset: int) -> bytes:
        """The plaintext from ``offset`` to the end of its segment (``peek``): not a read,
        so a reader that peeks where it stands (``readline``) stays a sequential one."""
        if offset >= self.size:
            return b""
        index = offset // self.segment
        held = self._hold(index, self.read_ahead and offset == self._next_offset)
        try:
            return bytes(held.view[offset - index * self.segment :])
        finally:
            self._let_go(held)

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
            codec, self._codec = self._codec, None
        if codec is not None:
            codec.cipher.close()
        self.source.close()
