"""AES-CTR built by kstream on the kernel's ``ecb(aes)``: the ``--verify`` reference for
keyring keys.

It shares only the AES block function with :mod:`kstream.backends.kernel.ctr`, so a fault in
the kernel's counter handling or in kstream's streaming would show up as a mismatch.
"""

from __future__ import annotations

import socket
import struct

from kstream.backends.base import BLOCK
from kstream.backends.kernel import procfs
from kstream.backends.kernel.procfs import kernel_pick
from kstream.backends.kernel.sockets import (
    KernelKey,
    SocketPair,
    bind_tfm,
    kernel_failure,
    send_limit,
    set_key,
)
from kstream.errors import BackendUnavailable, option

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


class KernelEcbCtrStream(SocketPair):
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
            pick = kernel_pick(procfs.read_proc_crypto(), ECB_AES, "skcipher")
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
                            "the kernel's ecb(aes) returned no output; retry without "
                            f"{option('verify')}"
                        )
                    out.append(piece)
                    got += len(piece)
            except OSError as exc:
                raise kernel_failure("computing the verification keystream", exc) from exc
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


__all__ = ["ECB_AES", "KernelEcbCtrStream", "counter_blocks"]
