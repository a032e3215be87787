"""AES-CTR through the Linux kernel crypto API: an AF_ALG ``skcipher`` socket on ``ctr(aes)``.

One stream is one socket pair: a *tfm* socket bound to ``ctr(aes)`` (or to the driver the
user named) that holds the key, and the *op* socket ``accept()`` returns, which carries one
continuous request. The op and IV are sent once, with ``MSG_MORE``; data follows in sends of
at most :data:`~kstream.backends.base.CHUNK` bytes, each also with ``MSG_MORE``, and after
every send exactly the output the kernel can already produce is read back: whole 16-byte
blocks, never more than is queued (a blocking ``recv`` for more than is processable waits
forever, and one for less than a block returns nothing or fails). ``finalize`` sends an
empty message without ``MSG_MORE``, which releases the partial last block.

This lockstep is deliberate; it follows from measured AF_ALG behaviour (6.1, 6.12, 7.2):

* the queue is bounded by ``SO_SNDBUF`` (208 KiB by default), so sending more than that
  before reading blocks forever; one send of at most 63 KiB (less if the buffer is smaller,
  see :func:`send_limit`) in flight at a time never comes close;
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
import re
import select
import socket
import stat
import struct
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import TYPE_CHECKING, Literal

from kstream.backends.base import BLOCK, CHUNK, Availability, CipherOptions
from kstream.errors import BackendUnavailable, InvalidKey, IOFailure, KstreamError, UsageError
from kstream.keyring import KeyringRef
from kstream.procfs import CryptoAlg, implementations, kernel_pick, read_proc_crypto

if TYPE_CHECKING:
    from kstream.keys import Key

#: The algorithm name every kstream stream binds unless the user names a driver.
CTR_AES = "ctr(aes)"
AF_ALG_RESTRICT = "/proc/sys/crypto/af_alg_restrict"

#: A ``ctr(X)`` driver is the generic ``ctr`` template wrapped around the single-block cipher
#: ``X``: one block per call, no dedicated (AES-NI, ARMv8-CE, ...) ``ctr(aes)`` code. Correct,
#: but several times slower than OpenSSL, which makes the kernel path a poor default.
_TEMPLATE_DRIVER = re.compile(r"^ctr\((?P<cipher>.+)\)$")
#: Single-block AES ciphers that are portable C code (no AES instructions at all).
_C_CIPHERS = frozenset({"aes-generic", "aes-fixed-time"})

#: An ``update_from_fd`` call never moves more than this, whatever ``max_bytes`` says, so
#: its output buffer stays bounded.
_MAX_PER_CALL = 16 * CHUNK

#: The kernel's page size: AF_ALG accounts its send buffer in whole pages.
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

#: Input errors seen through splice/sendfile; anything else there is the socket's fault.
_INPUT_ERRNOS = frozenset({errno.EIO, errno.EISDIR, errno.EBADF, errno.ENXIO, errno.ESTALE})

FdKind = Literal["pipe", "file", "other"]

#: What ``transfer=auto`` uses for each kind of input fd, from a measurement in User Mode
#: Linux (generic C AES, 64 MiB per run in calls of 1 MiB, 7 interleaved runs, MiB/s as
#: median / best; UML 6.1.176, 6.12.113 and 7.2.7):
#:
#: ======================================  =================  =================  =============
#: input and method                        6.1                6.12               7.2
#: ======================================  =================  =================  =============
#: pipe: ``splice``                        157 / 170          189 / 206          163 / 187
#: pipe: ``read`` 63 KiB + ``sendmsg``     147 / 177          174 / 180          144 / 176
#: file: ``sendfile``                      185 / 203          197 / 221          181 / 199
#: file: ``read`` 63 KiB + ``sendmsg``     193 / 217          170 / 221          144 / 202
#: ======================================  =================  =================  =============
#:
#: ``splice`` wins for pipes on every kernel; for files ``sendfile`` and ``read`` are within
#: noise of each other, with ``sendfile`` ahead on the two newer kernels, and it saves the
#: copy into user space, so it is the default. These numbers are NOT representative of real
#: hardware: in UML every system call and page fault is a round trip through the host and the
#: AES is the generic C code, so re-measure on a real machine before relying on the choice.
#: ``None`` means "plain update" (the caller reads and calls ``update``).
AUTO_FD_TRANSFER: dict[FdKind, Literal["splice", "sendfile"] | None] = {
    "pipe": "splice",
    "file": "sendfile",
    "other": None,
}


def af_alg_restrict() -> int | None:
    """The ``crypto.af_alg_restrict`` sysctl (Linux 7.3+), or ``None`` where it does not exist.

    0 allows every algorithm, 1 (the default) only an allowlist (bind fails with ENOENT for
    the rest), 2 disables AF_ALG (socket fails with EAFNOSUPPORT).
    """
    try:
        with open(AF_ALG_RESTRICT, encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def no_af_alg_reason() -> str:
    """Why ``socket(AF_ALG)`` failed with EAFNOSUPPORT, as precisely as this host allows."""
    restrict = af_alg_restrict()
    if restrict is None:
        return (
            "this kernel has no AF_ALG sockets (CONFIG_CRYPTO_USER_API_SKCIPHER off or the "
            "af_alg module not loadable, or af_alg_restrict=2)"
        )
    if restrict >= 2:
        return (
            f"this kernel has no AF_ALG sockets (sysctl crypto.af_alg_restrict={restrict} "
            "disables them; set it to 1 or 0 to allow)"
        )
    return (
        "this kernel has no AF_ALG sockets (CONFIG_CRYPTO_USER_API_SKCIPHER off or the af_alg "
        f"module not loadable; crypto.af_alg_restrict={restrict})"
    )


def _restrict_hint() -> str:
    restrict = af_alg_restrict()
    if restrict == 1:
        return ", or not allowed by af_alg_restrict=1 (set sysctl crypto.af_alg_restrict=0)"
    return ""


def available_ctr_aes_drivers(algs: list[CryptoAlg] | None = None) -> list[str]:
    """Driver names that ``--driver`` accepts here: registered ``ctr(aes)`` implementations,
    best first, then ``ctr(X)`` for each loaded AES cipher ``X`` (the ``ctr`` template builds
    those on first use, so they are valid even before they show up as ``ctr(aes)``)."""
    algs = read_proc_crypto() if algs is None else algs
    names = [alg.driver for alg in implementations(algs, CTR_AES, "skcipher")]
    for cipher in implementations(algs, "aes", "cipher"):
        candidate = f"ctr({cipher.driver})"
        if candidate not in names:
            names.append(candidate)
    return names


def bind_refused_reason(socket_type: str, name: str, driver: str | None) -> str:
    """Why binding ``name`` failed with ENOENT; ``driver`` is the user's ``--driver``."""
    if driver is not None:
        names = available_ctr_aes_drivers()
        listing = ", ".join(names) if names else "none listed in /proc/crypto"
        return (
            f"the kernel has no {CTR_AES} driver '{driver}' for AF_ALG{_restrict_hint()}; "
            f"available: {listing}"
        )
    module = "algif_skcipher" if socket_type == "skcipher" else f"algif_{socket_type}"
    return (
        f"the kernel refused {socket_type} '{name}' for AF_ALG (module {module} or the "
        f"algorithm's module missing{_restrict_hint()})"
    )


def open_alg_socket() -> socket.socket:
    """A fresh AF_ALG socket, or :class:`BackendUnavailable` saying why there is none."""
    try:
        return socket.socket(socket.AF_ALG, socket.SOCK_SEQPACKET, 0)
    except OSError as exc:
        if exc.errno == errno.EAFNOSUPPORT:
            raise BackendUnavailable(no_af_alg_reason()) from None
        raise BackendUnavailable(f"cannot create an AF_ALG socket: {exc.strerror or exc}") from None


def bind_tfm(socket_type: str, name: str, driver: str | None = None) -> socket.socket:
    """An AF_ALG socket of ``socket_type`` bound to algorithm or driver ``name``.

    ``driver`` is the user's ``--driver`` (so that a refusal lists the alternatives).
    Binding also makes the kernel instantiate a template such as ``ctr(aes)``, after which
    the instance is listed in ``/proc/crypto``.
    """
    sock = open_alg_socket()
    try:
        sock.bind((socket_type, name))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.ENOENT:
            raise BackendUnavailable(bind_refused_reason(socket_type, name, driver)) from None
        raise BackendUnavailable(
            f"cannot bind AF_ALG {socket_type} '{name}': {exc.strerror or exc}"
        ) from None
    except ValueError:  # e.g. "AF_ALG name too long" (64 bytes at most)
        sock.close()
        raise UsageError(f"'{name}' is not a valid kernel crypto algorithm name") from None
    return sock


#: ``ALG_SET_KEY_BY_KEY_SERIAL`` (linux/if_alg.h, Linux 6.2); Python 3.11 has no constant.
ALG_SET_KEY_BY_KEY_SERIAL = 7
#: Kernels before 6.2 answer option 7 with ENOPROTOOPT (measured: 6.1 does, 6.12 and 7.2
#: take the key). kstream only passes logon/user keys, the types every such kernel takes,
#: so this errno means the kernel, not the key.
NO_KEY_BY_SERIAL = (
    "this kernel cannot take keys from the keyring (needs Linux ≥ 6.2); use a key file"
)

#: A cipher key: raw bytes, or a key in the kernel keyring that AF_ALG fetches by serial.
KernelKey = bytes | KeyringRef


def serial_key_error(err: int | None, ref: KeyringRef, what: str) -> KstreamError:
    """One actionable line for ``setsockopt(ALG_SET_KEY_BY_KEY_SERIAL)`` failing with ``err``."""
    if err == errno.ENOPROTOOPT:
        return BackendUnavailable(NO_KEY_BY_SERIAL)
    if err == errno.ENOKEY:
        return InvalidKey(f"{ref.label} no longer exists (removed, or its keyring was cleared)")
    if err == errno.EACCES:
        where = f" from the {ref.keyring} keyring" if ref.keyring else ""
        return InvalidKey(
            f"no permission to use {ref.label}{where}: this process does not possess it; "
            "link the user keyring into your session keyring with 'keyctl link @u @s', or add "
            "the key with --keyring session"
        )
    if err == errno.EKEYEXPIRED:
        return InvalidKey(f"{ref.label} has expired; add the key again ('kstream key add')")
    if err == errno.EKEYREVOKED:
        return InvalidKey(f"{ref.label} has been revoked; add the key again ('kstream key add')")
    if err == errno.EINVAL:
        return InvalidKey(
            f"the kernel's {what} refused {ref.label}: an AES key must be 16, 24 or 32 bytes"
        )
    return BackendUnavailable(
        f"the kernel's {what} could not take {ref.label}: {os.strerror(err or 0)}"
    )


def set_key_by_serial(tfm: socket.socket, ref: KeyringRef, what: str) -> None:
    """Key the bound ``tfm`` socket with a keyring key: the kernel fetches it by serial and
    the bytes never pass through this process."""
    try:
        tfm.setsockopt(socket.SOL_ALG, ALG_SET_KEY_BY_KEY_SERIAL, struct.pack("i", ref.serial))
    except OSError as exc:
        raise serial_key_error(exc.errno, ref, what) from None


def set_key(tfm: socket.socket, key_bytes: KernelKey, what: str) -> None:
    """Give the bound ``tfm`` socket its key (``ALG_SET_KEY``, or by keyring serial).

    The one place a key reaches the kernel.
    """
    if isinstance(key_bytes, KeyringRef):
        set_key_by_serial(tfm, key_bytes, what)
        return
    try:
        tfm.setsockopt(socket.SOL_ALG, socket.ALG_SET_KEY, key_bytes)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            raise InvalidKey(
                f"the kernel's {what} refused a {len(key_bytes)}-byte key; an AES key must be "
                "16, 24 or 32 bytes"
            ) from None
        raise BackendUnavailable(
            f"the kernel's {what} could not take the key: {exc.strerror or exc}"
        ) from None


def resolve_driver(algs: list[CryptoAlg], bound: str) -> CryptoAlg | None:
    """The ``/proc/crypto`` entry a socket bound to ``bound`` most likely uses.

    AF_ALG cannot tell which implementation it got; the kernel's rule (exact driver name,
    else highest priority for the name) applied to ``/proc/crypto`` right after the bind is
    the best available answer.
    """
    return kernel_pick(algs, bound, "skcipher")


def template_cipher(driver: str) -> str | None:
    """For a ``ctr`` template instance such as ``ctr(aes-generic)``, the cipher inside it."""
    match = _TEMPLATE_DRIVER.match(driver)
    return match["cipher"] if match else None


def generic_warning(driver: str) -> str | None:
    """A one-line warning when ``driver`` is the slow generic template, else ``None``."""
    cipher = template_cipher(driver)
    if cipher is None:
        return None
    if cipher in _C_CIPHERS:
        return (
            f"only the generic ctr template over {cipher} (portable C, no AES instructions): "
            "slower than openssl"
        )
    return (
        f"only the generic ctr template over {cipher} (one block per call, no dedicated "
        "ctr(aes) driver): likely slower than openssl"
    )


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


def send_limit(op: socket.socket) -> int:
    """The most one send may offer this op socket without ever waiting for buffer space.

    AF_ALG lets a send proceed while at least a page of ``SO_SNDBUF`` (rounded down to whole
    pages) is free, and a send that finds it full waits for a ``recv`` that the lockstep only
    makes after the send returns: a hang. With the default buffer (208 KiB) this is
    :data:`~kstream.backends.base.CHUNK`; a lowered ``net.core.wmem_default`` makes it smaller.
    Less than a block (the held-back tail) is always queued before a send, hence ``- BLOCK``.
    """
    try:
        sndbuf = op.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    except OSError:
        return CHUNK
    usable = max(sndbuf - sndbuf % _PAGE, _PAGE) - BLOCK
    return max(BLOCK, min(CHUNK, usable - usable % BLOCK))


def _kernel_failure(action: str, exc: OSError) -> BackendUnavailable:
    return BackendUnavailable(
        f"the kernel crypto socket failed while {action}: {exc.strerror or exc}; "
        "retry with --backend openssl"
    )


def _input_failure(exc: OSError) -> IOFailure:
    return IOFailure(f"cannot read the input: {exc.strerror or exc}")


def _wait_readable(fd: int) -> None:
    """Block until a non-blocking *input* fd has data (never used on the op socket)."""
    select.select([fd], [], [])


def _close_sockets(*socks: socket.socket | None) -> None:
    """Close every socket given, even when closing one of them fails."""
    try:
        if socks and socks[0] is not None:
            socks[0].close()
    finally:
        if len(socks) > 1:
            _close_sockets(*socks[1:])


class _SocketPair:
    """What a stream owns in the kernel: the bound transform socket and the operation socket
    accepted from it. Both are closed together, and a failure while starting closes them
    before it is reported."""

    _tfm: socket.socket | None
    _op: socket.socket | None

    def close(self) -> None:
        op, tfm = self._op, self._tfm
        self._op = self._tfm = None
        _close_sockets(op, tfm)

    @contextmanager
    def _starting(self, action: str) -> Iterator[None]:
        """Close both sockets if starting fails; a kernel error becomes one clear message."""
        try:
            yield
        except OSError as exc:
            self.close()
            raise _kernel_failure(action, exc) from None
        except BaseException:
            self.close()
            raise


class KernelStream(_SocketPair):
    """One AES-CTR stream through one AF_ALG socket pair.

    Implements :class:`~kstream.backends.base.CipherStream` and
    :class:`~kstream.backends.base.FdCipherStream`. Blocking; use from one thread.
    """

    def __init__(self, key_bytes: KernelKey, iv: bytes,
                 options: CipherOptions | None = None) -> None:
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
        #: The largest single send/splice/sendfile (see :func:`send_limit`).
        self._send_max = CHUNK
        #: Set when a sendfile request ended mid-block (the file shrank under us): the
        #: counter has moved past the partial block, so no more input may follow.
        self._counter_skipped = False
        self._finished = False
        bound = options.driver or CTR_AES
        with self._starting("starting the stream"):
            self._tfm = bind_tfm("skcipher", bound, options.driver)
            self.implementation = resolve_driver(read_proc_crypto(), bound)
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
                raise _kernel_failure("reading output", exc) from None
            if not piece:
                raise BackendUnavailable(
                    f"the kernel crypto socket returned no output with {n - done} bytes "
                    "pending; retry with --backend openssl"
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
                raise _kernel_failure("sending input", exc) from None
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
                    raise _kernel_failure("ending the stream", exc) from None
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
                raise _input_failure(exc) from None
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
                if exc.errno in _INPUT_ERRNOS:
                    raise _input_failure(exc) from None
                raise _kernel_failure("splicing input", exc) from None
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
            raise _input_failure(exc) from None
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
                if exc.errno in _INPUT_ERRNOS:
                    raise _input_failure(exc) from None
                raise _kernel_failure("sending the input file", exc) from None
            if moved == 0:
                break
            if moved % BLOCK:
                self._counter_skipped = True
            consumed += moved
            position += moved
            self._queued += moved
            self._drain(op, out, final=True)
        return consumed


class KernelBackend:
    """The ``kernel`` backend: AES-CTR computed by the kernel's ``ctr(aes)`` driver."""

    name = "kernel"

    def probe(self) -> Availability:
        """Bind ``ctr(aes)`` and set a dummy key on a throwaway socket, as a stream would."""
        try:
            with closing(bind_tfm("skcipher", CTR_AES)) as tfm:
                set_key(tfm, bytes(16), CTR_AES)
        except (BackendUnavailable, InvalidKey) as exc:
            return Availability(self.name, False, str(exc))
        pick = resolve_driver(read_proc_crypto(), CTR_AES)
        if pick is None:
            return Availability(
                self.name,
                True,
                f"{CTR_AES} through AF_ALG (driver not listed in /proc/crypto)",
                {"driver": None},
            )
        warning = generic_warning(pick.driver)
        details: dict[str, object] = {
            "driver": pick.driver,
            "priority": pick.priority,
            "module": pick.module,
            "async": pick.is_async,
            "generic_only": warning is not None,
        }
        reason = f"{CTR_AES} through AF_ALG, driver {pick.driver} (priority {pick.priority})"
        if warning is not None:
            details["warning"] = warning
            reason += f"; {warning}"
        return Availability(self.name, True, reason, details)

    def open(self, key: Key, iv: bytes, options: CipherOptions | None = None) -> KernelStream:
        return KernelStream(kernel_key(key), iv, options)


def kernel_key(key: Key) -> KernelKey:
    """What the kernel is keyed with: a keyring key's serial (never its bytes), else bytes."""
    ref = key.keyring_ref
    return ref if ref is not None else key.material()


HMAC_SHA256 = "hmac(sha256)"


def kernel_hmac_sha256(key: KernelKey, data: bytes) -> bytes:
    """HMAC-SHA256(key, data) computed by the kernel (an AF_ALG ``hash`` socket).

    With a keyring key this is how kstream derives a file's MAC key without the user's key
    ever entering the process (measured: ``hmac(sha256)`` takes keys by serial on 6.12 and
    7.2). Only the 32-byte result comes back.
    """
    with closing(bind_tfm("hash", HMAC_SHA256)) as tfm:
        set_key(tfm, key, HMAC_SHA256)
        try:
            op, _ = tfm.accept()
        except OSError as exc:
            raise _kernel_failure("starting the hash", exc) from None
        with op:
            try:
                op.sendall(data)
                digest = op.recv(32)
            except OSError as exc:
                raise _kernel_failure("computing the MAC key", exc) from None
    if len(digest) != 32:
        raise BackendUnavailable(
            f"the kernel's {HMAC_SHA256} returned {len(digest)} bytes instead of 32"
        )
    return digest


ECB_AES = "ecb(aes)"


def counter_blocks(first: int, count: int) -> bytes:
    """``count`` CTR counter blocks from ``first``: 128-bit big-endian, wrapping like
    OpenSSL and the kernel's ``ctr``."""
    high, low = divmod(first, 1 << 64)
    if low + count <= 1 << 64:
        words = [high] * (2 * count)
        words[1::2] = range(low, low + count)
        return struct.pack(f">{2 * count}Q", *words)
    return b"".join(((first + i) % (1 << 128)).to_bytes(BLOCK, "big") for i in range(count))


class KernelEcbCtrStream(_SocketPair):
    """AES-CTR computed by kstream from the kernel's ``ecb(aes)``: the keystream is the ECB
    encryption of counter blocks that kstream builds itself.

    The ``--verify`` reference for keys that never leave the kernel, where OpenSSL cannot
    be used. Decrypting the output through a second ``ctr(aes)`` socket would be no check
    at all for CTR (a consistently wrong keystream cancels out); this shares only the AES
    block function with the stream it checks, not the counter handling, the streaming
    lockstep or the splice/sendfile paths. Slow (counter blocks are built in Python), which
    is acceptable for a verification mode. Returns exactly as many bytes as it is given.
    """

    def __init__(self, key: KernelKey, iv: bytes) -> None:
        if len(iv) != BLOCK:
            raise ValueError(f"IV must be {BLOCK} bytes")
        self._op = None
        self._tfm = bind_tfm("skcipher", ECB_AES)
        with self._starting("starting the verification stream"):
            pick = kernel_pick(read_proc_crypto(), ECB_AES, "skcipher")
            driver = pick.driver if pick is not None else ECB_AES
            set_key(self._tfm, key, driver)
            self._op, _ = self._tfm.accept()
            self._max_blocks = send_limit(self._op) // BLOCK
        self._counter = int.from_bytes(iv, "big")
        self._spare = b""  # keystream bytes of the last block not used yet
        self.description = f"ctr computed by kstream over kernel {driver}"

    def _keystream(self, blocks: int) -> bytes:
        op = self._op
        if op is None:
            raise ValueError("cipher stream is closed")
        out: list[bytes] = []
        while blocks:
            n = min(blocks, self._max_blocks)
            counters = counter_blocks(self._counter, n)
            self._counter = (self._counter + n) % (1 << 128)
            blocks -= n
            try:
                op.sendmsg_afalg([counters], op=socket.ALG_OP_ENCRYPT)
                got = 0
                while got < len(counters):
                    piece = op.recv(len(counters) - got)
                    if not piece:
                        raise BackendUnavailable(
                            "the kernel's ecb(aes) returned no output; retry without --verify"
                        )
                    out.append(piece)
                    got += len(piece)
            except OSError as exc:
                raise _kernel_failure("computing the verification keystream", exc) from None
        return b"".join(out)

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        with memoryview(data) as raw, raw.cast("B") as view:
            n = len(view)
            if not n:
                return b""
            stream = self._spare
            if n > len(stream):
                stream += self._keystream(-(-(n - len(stream)) // BLOCK))
            self._spare = stream[n:]
            mixed = int.from_bytes(view, "big") ^ int.from_bytes(stream[:n], "big")
        return mixed.to_bytes(n, "big")

    def finalize(self) -> bytes:
        self.close()
        return b""


def ctr_aes_drivers() -> list[CryptoAlg]:
    """Every usable ``ctr(aes)`` implementation, the kernel's pick first.

    Binds ``ctr(aes)`` once first, so that the kernel's default instance is listed even on a
    system where nothing has used it yet; does not build other instances.
    """
    with closing(bind_tfm("skcipher", CTR_AES)):
        pass
    return implementations(read_proc_crypto(), CTR_AES, "skcipher")


__all__ = [
    "ALG_SET_KEY_BY_KEY_SERIAL",
    "AUTO_FD_TRANSFER",
    "CTR_AES",
    "NO_KEY_BY_SERIAL",
    "KernelBackend",
    "KernelEcbCtrStream",
    "KernelKey",
    "KernelStream",
    "af_alg_restrict",
    "available_ctr_aes_drivers",
    "bind_refused_reason",
    "bind_tfm",
    "counter_blocks",
    "ctr_aes_drivers",
    "fd_kind",
    "generic_warning",
    "kernel_hmac_sha256",
    "kernel_key",
    "no_af_alg_reason",
    "open_alg_socket",
    "resolve_driver",
    "send_limit",
    "serial_key_error",
    "set_key",
    "set_key_by_serial",
    "template_cipher",
]
