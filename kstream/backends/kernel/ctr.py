"""AES-CTR through the Linux kernel crypto API: an AF_ALG ``skcipher`` socket on ``ctr(aes)``.

One stream is one socket pair: a *tfm* socket bound to ``ctr(aes)`` (or to the driver the
user named) that holds the key, and the *op* socket ``accept()`` returns, which carries one
continuous request. The op and IV are sent once, with ``MSG_MORE``; data follows in sends of
at most :data:`~kstream.backends.base.CHUNK` bytes, each also with ``MSG_MORE``, and after
every send exactly the output the kernel can already produce is read back: whole 16-byte
blocks, never more than is queued (a blocking ``recv`` for more than is processable waits
forever, and one for less than a block returns nothing or fails). ``finalize`` sends an
empty message without ``MSG_MORE``, which releases the partial last block.

This lockstep is deliberate; it follows from how AF_ALG behaves (seen on 6.1, 6.12 and 7.2):

* the queue is bounded by ``SO_SNDBUF`` (208 KiB by default), so sending more than that
  before reading blocks forever; one send of at most 63 KiB (less if the buffer is smaller,
  see :func:`~.sockets.send_limit`) in flight at a time never comes close;
* readiness (poll/epoll) on op sockets is wrong in both directions, so nothing here ever
  waits for it: every send is followed by a ``recv`` of a size that is known to be ready;
* every count that ``sendmsg``, ``splice``, ``sendfile`` and ``recv`` return is honoured;
  short counts are normal, not errors;
* only the true end of a stream may be a partial block: a request that ends mid-block
  throws the rest of that keystream block away and the next request would continue at the
  next counter, silently breaking CTR. That is why ``sendfile`` (each call ends a request)
  only ever moves whole blocks, and a partial tail always goes through ``sendmsg``.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import stat
from typing import Literal

from kstream.backends.base import BLOCK, CHUNK, CipherOptions
from kstream.backends.kernel import procfs
from kstream.backends.kernel.drivers import CTR_AES, available_ctr_aes_drivers, resolve_driver
from kstream.backends.kernel.sockets import (
    KernelKey,
    SocketPair,
    bind_tfm,
    kernel_failure,
    send_limit,
    set_key,
)
from kstream.errors import BackendUnavailable, IOFailure, KstreamError, UsageError, option

#: An ``update_from_fd`` call never moves more than this, whatever ``max_bytes`` says, so
#: its output buffer stays bounded.
_MAX_PER_CALL = 16 * CHUNK

#: Input errors seen through splice/sendfile; anything else there is the socket's fault.
_INPUT_ERRNOS = frozenset({errno.EIO, errno.EISDIR, errno.EBADF, errno.ENXIO, errno.ESTALE})

FdKind = Literal["pipe", "file", "other"]

#: What ``transfer=auto`` uses for each kind of input fd: ``splice`` for a pipe and
#: ``sendfile`` for a file were fastest or equal, and save the copy into user space
#: (measured in User Mode Linux only: docs/benchmark.md, "The kernel backend").
#: ``None`` means "plain update" (the caller reads and calls ``update``).
AUTO_FD_TRANSFER: dict[FdKind, Literal["splice", "sendfile"] | None] = {
    "pipe": "splice",
    "file": "sendfile",
    "other": None,
}


def fd_kind(fd: int) -> FdKind:
    """``pipe`` (splice works), ``file`` (a regular file: sendfile works) or ``other``."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return "other"
    if stat.S_ISFIFO(mode):
        return "pipe"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


def _input_failure(exc: OSError) -> IOFailure:
    """The input fd failed under ``read``, ``splice`` or ``sendfile``: the user's file, not
    the kernel crypto socket, is at fault."""
    return IOFailure(f"cannot read the input: {exc.strerror or exc}")


def _transfer_failure(exc: OSError, action: str) -> KstreamError:
    """An error of ``splice`` or ``sendfile``, which involve both the input and the socket:
    the input's for the errnos only an input gives, else the kernel crypto socket's."""
    return _input_failure(exc) if exc.errno in _INPUT_ERRNOS else kernel_failure(action, exc)


def _wait_readable(fd: int) -> None:
    """Block until a non-blocking *input* fd has data (never used on the op socket)."""
    select.select([fd], [], [])


class KernelStream(SocketPair):
    """One AES-CTR stream through one AF_ALG socket pair.

    Implements :class:`~kstream.backends.base.CipherStream` and
    :class:`~kstream.backends.base.FdCipherStream`. Blocking; use from one thread.
    """

    def __init__(
        self, key_bytes: KernelKey, iv: bytes, options: CipherOptions | None = None
    ) -> None:
        options = options or CipherOptions()
        if len(iv) != BLOCK:
            raise ValueError(f"IV must be {BLOCK} bytes")
        if options.transfer not in ("auto", "sendmsg", "splice", "sendfile"):
            raise UsageError(
                f"unknown transfer mode '{options.transfer}'; choose auto, sendmsg, splice "
                "or sendfile"
            )
        self._transfer = options.transfer
        self._tfm = None
        self._op = None
        #: Bytes sent to the kernel whose output has not been read back yet.
        self._queued = 0
        #: The largest single send/splice/sendfile (see :func:`~.sockets.send_limit`).
        self._send_max = CHUNK
        #: Set when a sendfile request ended mid-block (the file shrank under us): the
        #: counter has moved past the partial block, so no more input may follow.
        self._counter_skipped = False
        self._finished = False
        bound = options.driver or CTR_AES
        with self._starting("starting the stream"):
            self._tfm = bind_tfm("skcipher", bound, options.driver)
            self.implementation = resolve_driver(procfs.read_proc_crypto(), bound)
            if self.implementation is not None and self.implementation.name != CTR_AES:
                raise UsageError(
                    f"driver '{bound}' implements {self.implementation.name}, not {CTR_AES}; "
                    f"choose one of: {', '.join(available_ctr_aes_drivers())}"
                )
            self.driver = self.implementation.driver if self.implementation else bound
            self.description = f"kernel {self.driver}"
            set_key(self._tfm, key_bytes, self.driver)
            self._op, _ = self._tfm.accept()
            self._send_max = send_limit(self._op)
            self._op.sendmsg_afalg(op=socket.ALG_OP_ENCRYPT, iv=iv, flags=socket.MSG_MORE)

    # -- plumbing -------------------------------------------------------------------------

    def _live(self) -> socket.socket:
        if self._op is None:
            if self._finished:
                raise ValueError("cipher stream is finalized")
            raise ValueError("cipher stream is closed")
        return self._op

    def _recv_exactly(self, op: socket.socket, out: list[bytes], n: int) -> None:
        """Append exactly ``n`` output bytes to ``out`` (``n`` is known to be ready).

        ``recv`` (not ``recv_into``) lets the kernel write straight into the bytes objects
        that are returned; a single piece is returned without any copy at all.
        """
        done = 0
        while done < n:
            try:
                piece = op.recv(n - done)
            except OSError as exc:
                raise kernel_failure("reading output", exc) from exc
            if not piece:
                raise BackendUnavailable(
                    f"the kernel crypto socket returned no output with {n - done} bytes "
                    f"pending; retry with {option('openssl')}"
                )
            out.append(piece)
            done += len(piece)
        self._queued -= n

    def _drain(self, op: socket.socket, out: list[bytes], *, final: bool = False) -> None:
        """Read back what the kernel can produce now: whole blocks, or all after a final send."""
        ready = self._queued if final else self._queued - self._queued % BLOCK
        if ready:
            self._recv_exactly(op, out, ready)

    def _check_more_allowed(self) -> None:
        if self._counter_skipped:
            raise IOFailure(
                "the input file shrank and grew again while it was being encrypted; the "
                "output is invalid, encrypt a file that is not being modified"
            )

    def _send_more(self, op: socket.socket, data: memoryview, out: list[bytes]) -> None:
        """Feed ``data`` with MSG_MORE in lockstep, appending the output to ``out``."""
        if data:
            self._check_more_allowed()
        pos = 0
        while pos < len(data):
            try:
                sent = op.sendmsg([data[pos : pos + self._send_max]], [], socket.MSG_MORE)
            except OSError as exc:
                raise kernel_failure("sending input", exc) from exc
            pos += sent
            self._queued += sent
            self._drain(op, out)

    # -- CipherStream ---------------------------------------------------------------------

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        op = self._live()
        out: list[bytes] = []
        with memoryview(data) as raw, raw.cast("B") as view:
            self._send_more(op, view, out)
        return b"".join(out)

    def finalize(self) -> bytes:
        op = self._live()
        out: list[bytes] = []
        try:
            if self._queued:
                try:
                    op.sendmsg([], [], 0)
                except OSError as exc:
                    raise kernel_failure("ending the stream", exc) from exc
                self._drain(op, out, final=True)
            self._finished = True
        finally:
            self.close()
        return b"".join(out)

    def __enter__(self) -> KernelStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- FdCipherStream -------------------------------------------------------------------

    def _fd_method(self, fd: int) -> Literal["splice", "sendfile"] | None:
        kind = fd_kind(fd)
        if self._transfer == "auto":
            return AUTO_FD_TRANSFER[kind]
        if self._transfer == "splice" and kind == "pipe":
            return "splice"
        if self._transfer == "sendfile" and kind == "file":
            return "sendfile"
        return None

    def accepts_fd(self, fd: int) -> bool:
        return self._fd_method(fd) is not None

    def update_from_fd(self, fd: int, max_bytes: int) -> tuple[bytes, int]:
        op = self._live()
        limit = max(BLOCK, min(max_bytes, _MAX_PER_CALL))
        out: list[bytes] = []
        method = self._fd_method(fd)
        if method == "splice":
            consumed = self._splice(op, fd, limit, out)
        elif method == "sendfile":
            consumed = self._sendfile(op, fd, limit, out)
        else:
            consumed = self._read(op, fd, limit, out)
        return b"".join(out), consumed

    def _read(self, op: socket.socket, fd: int, limit: int, out: list[bytes]) -> int:
        """One ``read`` + lockstep ``sendmsg``: the path for fds that need no special call."""
        while True:
            try:
                chunk = os.read(fd, min(limit, self._send_max))
                break
            except BlockingIOError:
                _wait_readable(fd)
            except OSError as exc:
                raise _input_failure(exc) from exc
        with memoryview(chunk) as view:
            self._send_more(op, view, out)
        return len(chunk)

    def _splice(self, op: socket.socket, fd: int, limit: int, out: list[bytes]) -> int:
        """Move pipe data into the op socket with ``splice`` (``SPLICE_F_MORE`` = MSG_MORE).

        Returns early when the pipe runs dry, so a slow producer gets its output promptly.
        """
        consumed = 0
        opfd = op.fileno()
        while consumed < limit:
            want = min(self._send_max, limit - consumed)
            try:
                moved = os.splice(fd, opfd, want, flags=os.SPLICE_F_MORE)
            except BlockingIOError:
                if consumed:
                    break
                _wait_readable(fd)
                continue
            except OSError as exc:
                raise _transfer_failure(exc, "splicing input") from exc
            if moved == 0:
                break
            consumed += moved
            self._queued += moved
            self._drain(op, out)
            if moved < want:
                break
        return consumed

    def _sendfile(self, op: socket.socket, fd: int, limit: int, out: list[bytes]) -> int:
        """Move whole blocks of a regular file into the op socket with ``sendfile``.

        Each ``sendfile`` call ends the kernel request, so it only ever moves a multiple of
        16 bytes and everything is read back after each call. The last bytes of the file
        (less than a block), or any bytes while a partial block is queued, go through
        ``read`` + ``sendmsg(MSG_MORE)`` instead, so the partial block stays open until
        ``finalize`` and the counter never skips.
        """
        consumed = 0
        opfd = op.fileno()
        try:
            position = os.lseek(fd, 0, os.SEEK_CUR)
            size = os.fstat(fd).st_size
        except OSError as exc:
            raise _input_failure(exc) from exc
        while consumed < limit:
            want = min(self._send_max, limit - consumed)
            whole = min(want, max(0, size - position)) // BLOCK * BLOCK
            if self._queued or not whole:
                moved = self._read(op, fd, want, out)
                consumed += moved
                position += moved
                if moved < want:
                    break
                continue
            self._check_more_allowed()
            try:
                moved = os.sendfile(opfd, fd, None, whole)
            except OSError as exc:
                raise _transfer_failure(exc, "sending the input file") from exc
            if moved == 0:
                break
            if moved % BLOCK:
                self._counter_skipped = True
            consumed += moved
            position += moved
            self._queued += moved
            self._drain(op, out, final=True)
        return consumed


__all__ = ["AUTO_FD_TRANSFER", "FdKind", "KernelStream", "fd_kind"]
