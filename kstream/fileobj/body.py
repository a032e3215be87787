"""The body of one opened kstream file, read at random: where each segment is, the checks
of the segments a read touches, and a small cache of checked ciphertext.

Format v1 puts segment ``i`` at ``H + i * (S + 20)`` (``H``, the header's size), holding
plaintext bytes ``[i * S, (i + 1) * S)`` under the counter block ``IV + i * S / 16``: the
counter of plaintext byte ``p`` is ``IV + p / 16`` whichever segment holds it. So a read
fetches and checks the segments it touches (frame word and tag, with the checks and words
of ``kstream decrypt``: :class:`kstream.segments.SegmentCheck`), and then decrypts exactly
the bytes it returns, with a cipher started at the first of them, into the object it
returns: nothing is decrypted whole to be copied from.

The cache keeps checked ciphertext in a ring of ``cache_segments`` slots of S bytes. A
segment that follows a cached one takes the next slot where it can, so a sequential read
across a segment boundary is one range of ciphertext and one cipher call.

The file's size gives its layout, and the layout's last segment must carry the last flag
under a tag that verifies: :meth:`Body.check_end` checks that when the file is opened, so
the plaintext size is authenticated before any byte is returned, and a truncated or
extended file, a changed header or another key's file is refused then. No byte of a
segment is decrypted before its tag verified; a damaged segment fails the reads that touch
it and no others.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from typing import NamedTuple

from kstream.backends.base import BLOCK, CipherStream, IntoStream
from kstream.errors import FormatError, IntegrityError, KstreamError
from kstream.fileobj.ends import Input
from kstream.format import (
    FRAME_SIZE,
    LAST_FLAG,
    OVERHEAD,
    TAG_SIZE,
    Header,
    plaintext_size,
    truncation,
    walk_frames,
)
from kstream.segments import SegmentCheck

#: Checked segments kept by default: at the default segment size (1008 KiB) about 8 MiB,
#: enough for sequential reads in any read size and for the backward seeks of readers that
#: re-read a footer or an index (Parquet, zip).
DEFAULT_CACHE_SEGMENTS = 8
#: Segments a sequential reader has read ahead, at most.
READ_AHEAD = 2

#: The plan's cipher stream from a plaintext offset on (``Plan.cipher_at``).
CipherAt = Callable[[int], CipherStream]


class _Held(NamedTuple):
    """A checked segment's ciphertext, held by a read: in its ``slot`` of the ring, or in
    a buffer of its own (``slot`` None) when every slot was in use."""

    number: int
    ciphertext: memoryview
    slot: int | None


class Body:
    """The segments of one kstream file whose header was parsed: random reads of the
    plaintext, thread-safe.

    Memory: the ring of ``cache_segments`` segments of ciphertext, which also holds the
    segments read ahead; a segment of its own per read that finds every slot in use; and
    what the reads return. ``checked`` counts the segments read and checked (for tests and
    benchmarks).
    """

    def __init__(
        self,
        source: Input,
        header: Header,
        check: SegmentCheck,
        cipher_at: CipherAt,
        cache_segments: int = DEFAULT_CACHE_SEGMENTS,
        read_ahead: bool = True,
    ) -> None:
        if cache_segments < 1:
            raise ValueError("cache_segments must be at least 1")
        self.source = source
        self.header = header
        self.segment = header.auth_param
        self.unit = self.segment + OVERHEAD
        self._check = check
        self._cipher_at = cipher_at
        self._slots = cache_segments
        self._ring = memoryview(bytearray(cache_segments * self.segment))
        self._frames = [bytearray(FRAME_SIZE) for _ in range(cache_segments)]
        self._tags = [bytearray(TAG_SIZE) for _ in range(cache_segments)]
        #: Each slot's segment (checked, or being read), or -1.
        self._holds = [-1] * cache_segments
        #: How many reads (or a read ahead) use each slot: a slot in use is never reused.
        self._users = [0] * cache_segments
        #: Every segment in a slot, and its slot.
        self._placed: dict[int, int] = {}
        #: The checked ones, least recently used first.
        self._cached: OrderedDict[int, int] = OrderedDict()
        self._lock = threading.Lock()
        self.checked = 0
        #: Whether sequential reads read the next segments ahead (:meth:`_fetch_ahead`).
        self.read_ahead = read_ahead
        #: Segments being read ahead: the read, and the slot it fills.
        self._ahead: dict[int, tuple[Future[int], int]] = {}
        self._worker: ThreadPoolExecutor | None = None
        self._next_offset = 0
        #: The cipher that the last read left at a plaintext offset, and that offset.
        self._cipher: tuple[int, CipherStream] | None = None
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
        """Read and check the last segment (kept in the cache): its tag binds the last flag
        and its length, so the plaintext size is now authenticated, and with it the key and
        the header (both go into the MAC key).

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
        self._let_go([self._hold(index)])

    # --- slots (under the lock) ---------------------------------------------------------

    def _claim(self, index: int) -> int | None:
        """A slot for segment ``index``, now in use by the caller: the one after its
        predecessor's if free (a sequential read then finds the two in one range), else an
        empty one, else the least recently used; None if every slot is in use."""
        prev = self._placed.get(index - 1)
        slot: int | None = None
        if prev is not None and prev + 1 < self._slots and not self._users[prev + 1]:
            slot = prev + 1
        else:
            slot = next((s for s in range(self._slots) if self._holds[s] < 0), None)
            if slot is None:
                slot = next((s for s in self._cached.values() if not self._users[s]), None)
            if slot is None:
                return None
        self._vacate(slot)
        self._holds[slot] = index
        self._placed[index] = slot
        self._users[slot] += 1
        return slot

    def _vacate(self, slot: int) -> None:
        old = self._holds[slot]
        if old >= 0:
            self._cached.pop(old, None)
            self._placed.pop(old, None)
        self._holds[slot] = -1

    def _drop(self, slot: int | None) -> None:
        """Give up a slot whose segment was not checked (a failed or abandoned read)."""
        if slot is not None:
            with self._lock:
                self._users[slot] -= 1
                self._vacate(slot)

    def _abandoned(self, slot: int, _: Future[int]) -> None:
        self._drop(slot)

    def _let_go(self, held: list[_Held]) -> None:
        with self._lock:
            for one in held:
                if one.slot is not None:
                    self._users[one.slot] -= 1

    # --- segments -----------------------------------------------------------------------

    def _hold(self, index: int, sequential: bool = False) -> _Held:
        """Segment ``index``'s checked ciphertext, from the cache or read now, held until
        :meth:`_let_go` (its slot is not reused meanwhile). ``sequential``: the reader
        reads on from here, so the next segments are read ahead while this one is checked.

        A failure of a segment other than 0 before segment 0 verified checks segment 0
        first, so that it is worded as ``decrypt`` words it (a wrong key only while
        segment 0 has not verified)."""
        try:
            return self._hold_once(index, sequential)
        except IntegrityError:
            # Once segment 0 verified (the check's proof), a failure is a modified segment,
            # worded so by the check itself (:func:`kstream.segments.modified_at`).
            if index == 0 or self._check.proof.verified or not self._segment_0_verifies():
                raise
            return self._hold_once(index, sequential)  # fails again, worded for a modification

    def _segment_0_verifies(self) -> bool:
        try:
            self._let_go([self._hold_once(0, False)])
        except IntegrityError:
            return False
        return True

    def _hold_once(self, index: int, sequential: bool) -> _Held:
        with self._lock:
            slot = self._cached.get(index)
            if slot is not None:
                self._cached.move_to_end(index)
                self._users[slot] += 1
                return _Held(index, self._ciphertext_in(slot, index), slot)
            pending = self._ahead.pop(index, None)
            if pending is not None:
                slot = pending[1]  # the read ahead's use of it is now this read's
            elif index not in self._placed:  # (else another thread is reading it)
                slot = self._claim(index)
            if sequential:
                self._fetch_ahead(index + 1)
        try:
            ciphertext = self._load(index, slot, pending)
        except BaseException:
            self._drop(slot)
            raise
        if slot is not None:
            with self._lock:
                self._cached[index] = slot
        return _Held(index, ciphertext, slot)

    def _ciphertext_in(self, slot: int, index: int) -> memoryview:
        base = slot * self.segment
        return self._ring[base : base + self._span(index)[1] - OVERHEAD]

    def _parts(self, index: int, slot: int | None) -> tuple[bytearray, memoryview, bytearray]:
        """Where segment ``index``'s frame word, ciphertext and tag go."""
        if slot is None:
            size = self._span(index)[1] - OVERHEAD
            return bytearray(FRAME_SIZE), memoryview(bytearray(size)), bytearray(TAG_SIZE)
        return self._frames[slot], self._ciphertext_in(slot, index), self._tags[slot]

    def _fetch(self, index: int, slot: int) -> int:
        """Read segment ``index`` into ``slot`` (a read ahead)."""
        return self._read(index, self._parts(index, slot))

    def _read(self, index: int, parts: tuple[bytearray, memoryview, bytearray]) -> int:
        """Read segment ``index`` into its parts; the bytes read (short where the file
        ends)."""
        frame, ciphertext, tag = parts
        start, _ = self._span(index)
        return self.source.pread_parts(start, [memoryview(frame), ciphertext, memoryview(tag)])

    def _load(
        self, index: int, slot: int | None, pending: tuple[Future[int], int] | None
    ) -> memoryview:
        """Read (or take from the read ahead) and check segment ``index``."""
        parts = self._parts(index, slot)
        got = None
        if pending is not None:
            # A failure is met again below, in this thread, and worded there.
            with contextlib.suppress(KstreamError, OSError, CancelledError):
                got = pending[0].result()
        if got is None:
            got = self._read(index, parts)
        if got < self._span(index)[1]:
            raise truncation(index, got)
        frame, ciphertext, tag = parts
        self._check.parts(index, index == self.count - 1, frame, ciphertext, tag)
        self.checked += 1
        return ciphertext

    def _fetch_ahead(self, index: int) -> None:
        """Start reading segments from ``index`` on (``READ_AHEAD`` of them) into slots
        of their own in a background thread, unless they are at hand (under the lock): a
        sequential reader's next segments are then read while it checks and decrypts this
        one (a read releases the GIL; the cipher does not), and on a network filesystem
        or object store the wait overlaps the work."""
        for ahead in range(index, min(index + READ_AHEAD, self.count)):
            if ahead in self._placed:
                continue
            slot = self._claim(ahead)
            if slot is None:
                return
            if self._worker is None:
                self._worker = ThreadPoolExecutor(1, thread_name_prefix="kstream-read-ahead")
            self._ahead[ahead] = (self._worker.submit(self._fetch, ahead, slot), slot)

    def _sequential(self, offset: int, end: int) -> bool:
        """Whether a read of ``[offset, end)`` starts where the previous one ended. After
        a jump, the segments being read ahead are dropped."""
        sequential, self._next_offset = offset == self._next_offset, end
        if not sequential and self._ahead:
            with self._lock:
                dropped, self._ahead = list(self._ahead.values()), {}
            for future, slot in dropped:
                future.cancel()
                future.add_done_callback(functools.partial(self._abandoned, slot))
        return sequential and self.read_ahead

    # --- reads ----------------------------------------------------------------------------

    def _ranges(self, held: list[_Held], start: int, end: int) -> list[memoryview]:
        """The ciphertext of plaintext ``[start, end)`` in as few ranges as the ring allows
        (segments in consecutive slots are one range)."""
        ranges: list[memoryview] = []
        joined: tuple[int, int] | None = None  # the last range's ring offsets, if in the ring
        for one in held:
            base = one.number * self.segment
            lo, hi = max(start, base) - base, min(end, base + len(one.ciphertext)) - base
            if one.slot is None:
                ranges.append(one.ciphertext[lo:hi])
                joined = None
                continue
            ring_lo, ring_hi = one.slot * self.segment + lo, one.slot * self.segment + hi
            if joined is not None and joined[1] == ring_lo and lo == 0:
                joined = (joined[0], ring_hi)
                ranges[-1] = self._ring[joined[0] : ring_hi]
            else:
                joined = (ring_lo, ring_hi)
                ranges.append(self._ring[ring_lo:ring_hi])
            if hi != self.segment:
                joined = None
        return ranges

    def _plaintext(
        self, offset: int, end: int, sequential: bool, out: memoryview | None = None
    ) -> bytes | None:
        """Plaintext ``[offset, end)`` (within the file): every segment it touches is
        checked, then exactly its bytes are decrypted (from the AES block that holds the
        first of them, unless the last read's cipher stopped right there), into ``out``
        if given (then None is returned), else into new bytes."""
        held: list[_Held] = []
        try:
            for index in range(offset // self.segment, (end - 1) // self.segment + 1):
                held.append(self._hold(index, sequential))
            cipher, start = self._cipher_for(offset)
            ranges = self._ranges(held, start, end)
            if out is not None and start == offset and isinstance(cipher, IntoStream):
                self._decrypt_into(cipher, end, ranges, out)
                return None
            plain = self._decrypt(cipher, end, ranges)
        finally:
            self._let_go(held)
        if start != offset:
            plain = plain[offset - start :]
        if out is None:
            return plain
        out[: len(plain)] = plain
        return None

    def _cipher_for(self, offset: int) -> tuple[CipherStream, int]:
        """The cipher the last read left at ``offset`` if there is one, else a new one at
        the AES block that holds ``offset``; and where it starts."""
        with self._lock:
            kept, self._cipher = self._cipher, None
        if kept is not None:
            if kept[0] == offset:
                return kept[1], offset
            kept[1].close()
        start = offset - offset % BLOCK
        return self._cipher_at(start), start

    def _decrypt(self, cipher: CipherStream, end: int, ranges: list[memoryview]) -> bytes:
        """``ranges`` of ciphertext through ``cipher``, which is then kept at ``end`` (the
        plaintext offset where they end) for the next read."""
        try:
            out = [cipher.update(piece) for piece in ranges]
            if sum(map(len, out)) != sum(map(len, ranges)):  # a cipher that holds bytes back
                out.append(cipher.finalize())
                cipher.close()
            else:
                self._keep((end, cipher))
        except BaseException:
            cipher.close()
            raise
        return out[0] if len(out) == 1 else b"".join(out)

    def _decrypt_into(
        self, cipher: CipherStream, end: int, ranges: list[memoryview], out: memoryview
    ) -> None:
        """As :meth:`_decrypt`, straight into ``out`` (which the ranges fill exactly):
        ``update_into`` needs room for a block more than it is given, so the last block
        goes through ``update``."""
        total = sum(map(len, ranges))
        try:
            pos = 0
            for piece in ranges:
                head = min(len(piece), max(total - pos - BLOCK, 0))
                if head:
                    cipher.update_into(piece[:head], out[pos:])  # type: ignore[attr-defined]
                if head < len(piece):
                    tail = cipher.update(piece[head:])
                    if len(tail) != len(piece) - head:
                        raise RuntimeError("the cipher held bytes back")
                    out[pos + head : pos + len(piece)] = tail
                pos += len(piece)
        except BaseException:
            cipher.close()
            raise
        self._keep((end, cipher))

    def _keep(self, cipher: tuple[int, CipherStream] | None) -> None:
        """Keep ``cipher`` (and the plaintext offset it stands at) for the next read, closing
        the one kept before."""
        with self._lock:
            kept, self._cipher = self._cipher, cipher
        if kept is not None:
            kept[1].close()

    def read_into(self, offset: int, out: memoryview) -> int:
        """Fill ``out`` with plaintext from ``offset``; the count, short only at the end.

        Every segment the range touches is checked before any of its bytes is decrypted; a
        segment that fails raises, and nothing of the read is returned.
        """
        end = min(offset + len(out), self.size)
        if end <= offset:
            return 0
        self._plaintext(offset, end, self._sequential(offset, end), out[: end - offset])
        return end - offset

    def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` plaintext bytes at ``offset`` (fewer at the end, none past it)."""
        end = min(offset + max(size, 0), self.size)
        if end <= offset:
            return b""
        return self._plaintext(offset, end, self._sequential(offset, end)) or b""

    def segment_rest(self, offset: int) -> bytes:
        """The plaintext from ``offset`` to the end of its segment (``peek``): not a read,
        so a reader that peeks where it stands (``readline``) stays a sequential one."""
        end = min((offset // self.segment + 1) * self.segment, self.size)
        if end <= offset:
            return b""
        return self._plaintext(offset, end, self.read_ahead and offset == self._next_offset) or b""

    def cached(self) -> list[int]:
        """The segments in the cache, least recently used first."""
        with self._lock:
            return list(self._cached)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            self._cached.clear()
            self._placed.clear()
            self._ahead.clear()
        self._keep(None)
        self.source.close()
