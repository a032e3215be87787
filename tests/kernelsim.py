"""A simulated kernel for the host-side tests: real ``/proc/crypto`` captures, and AF_ALG
sockets whose bind or setsockopt fails with a chosen errno.

The kernel is simulated at the narrowest seams: the socket constructor and
:func:`kstream.backends.kernel.procfs.read_proc_crypto`, which every kernel module reads
``/proc/crypto`` through.
"""

from __future__ import annotations

import _socket
import errno
import os
import socket
from typing import Any, ClassVar

import pytest

from kstream.backends.kernel import procfs, sockets
from kstream.backends.kernel.procfs import parse_proc_crypto

#: /proc/crypto of User Mode Linux 6.1.176 (Debian 12), captured verbatim after binding
#: skcipher ctr(aes) and hash hmac(sha256) with af_alg, algif_skcipher, algif_hash, ctr and
#: hmac loaded.
UML_6_1 = """\
name         : hmac(sha256)
driver       : hmac(sha256-generic)
module       : hmac
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : shash
blocksize    : 64
digestsize   : 32

name         : ctr(aes)
driver       : ctr(aes-generic)
module       : ctr
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : skcipher
async        : no
blocksize    : 1
min keysize  : 16
max keysize  : 32
ivsize       : 16
chunksize    : 16
walksize     : 16

name         : xxhash64
driver       : xxhash64-generic
module       : kernel
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : shash
blocksize    : 32
digestsize   : 8

name         : lzo-rle
driver       : lzo-rle-scomp
module       : kernel
priority     : 0
refcnt       : 1
selftest     : passed
internal     : no
type         : scomp

name         : lzo-rle
driver       : lzo-rle-generic
module       : kernel
priority     : 0
refcnt       : 1
selftest     : passed
internal     : no
type         : compression

name         : lzo
driver       : lzo-scomp
module       : kernel
priority     : 0
refcnt       : 3
selftest     : passed
internal     : no
type         : scomp

name         : lzo
driver       : lzo-generic
module       : kernel
priority     : 0
refcnt       : 1
selftest     : passed
internal     : no
type         : compression

name         : crct10dif
driver       : crct10dif-generic
module       : kernel
priority     : 100
refcnt       : 2
selftest     : passed
internal     : no
type         : shash
blocksize    : 1
digestsize   : 2

name         : crc32c
driver       : crc32c-generic
module       : kernel
priority     : 100
refcnt       : 2
selftest     : passed
internal     : no
type         : shash
blocksize    : 1
digestsize   : 4

name         : aes
driver       : aes-generic
module       : kernel
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : cipher
blocksize    : 16
min keysize  : 16
max keysize  : 32

name         : blake2b-512
driver       : blake2b-512-generic
module       : kernel
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : shash
blocksize    : 128
digestsize   : 64

name         : blake2b-384
driver       : blake2b-384-generic
module       : kernel
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : shash
blocksize    : 128
digestsize   : 48

name         : blake2b-256
driver       : blake2b-256-generic
module       : kernel
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : shash
blocksize    : 128
digestsize   : 32

name         : blake2b-160
driver       : blake2b-160-generic
module       : kernel
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : shash
blocksize    : 128
digestsize   : 20

name         : sha224
driver       : sha224-generic
module       : kernel
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : shash
blocksize    : 64
digestsize   : 28

name         : sha256
driver       : sha256-generic
module       : kernel
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : shash
blocksize    : 64
digestsize   : 32

name         : sha1
driver       : sha1-generic
module       : kernel
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : shash
blocksize    : 64
digestsize   : 20

name         : md5
driver       : md5-generic
module       : kernel
priority     : 0
refcnt       : 1
selftest     : passed
internal     : no
type         : shash
blocksize    : 64
digestsize   : 16

name         : ecb(cipher_null)
driver       : ecb-cipher_null
module       : kernel
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : skcipher
async        : no
blocksize    : 1
min keysize  : 0
max keysize  : 0
ivsize       : 0
chunksize    : 1
walksize     : 1

name         : digest_null
driver       : digest_null-generic
module       : kernel
priority     : 0
refcnt       : 1
selftest     : passed
internal     : no
type         : shash
blocksize    : 1
digestsize   : 0

name         : compress_null
driver       : compress_null-generic
module       : kernel
priority     : 0
refcnt       : 1
selftest     : passed
internal     : no
type         : compression

name         : cipher_null
driver       : cipher_null-generic
module       : kernel
priority     : 0
refcnt       : 1
selftest     : passed
internal     : no
type         : cipher
blocksize    : 1
min keysize  : 0
max keysize  : 0

"""

#: The ctr(aes), aes, hmac(sha256) blocks of User Mode Linux 7.2.7 (Debian unstable),
#: captured the same way: AES is now "aes-lib" and blocks end with a statesize line.
UML_7_2 = """\
name         : ctr(aes)
driver       : ctr(aes-lib)
module       : ctr
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : skcipher
async        : no
blocksize    : 1
min keysize  : 16
max keysize  : 32
ivsize       : 16
chunksize    : 16
walksize     : 16
statesize    : 0

name         : aes
driver       : aes-lib
module       : kernel
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : cipher
blocksize    : 16
min keysize  : 16
max keysize  : 32

name         : hmac(sha256)
driver       : hmac-sha256-lib
module       : kernel
priority     : 300
refcnt       : 1
selftest     : passed
internal     : no
type         : shash
blocksize    : 64
digestsize   : 32

"""

#: Hand-written after the real format of an x86-64 6.x kernel with aesni_intel and
#: sha256_ssse3 loaded, where something has also bound ctr(aes-aesni) and ctr(aes-generic):
#: the dedicated AES-NI CTR driver (async, a SIMD wrapper around an internal helper), two
#: ctr template instances, and the internal helper that user space cannot bind.
AESNI = """\
name         : ctr(aes)
driver       : ctr(aes-generic)
module       : ctr
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : skcipher
async        : no
blocksize    : 1
min keysize  : 16
max keysize  : 32
ivsize       : 16
chunksize    : 16
walksize     : 16

name         : ctr(aes)
driver       : ctr(aes-aesni)
module       : ctr
priority     : 300
refcnt       : 1
selftest     : passed
internal     : no
type         : skcipher
async        : no
blocksize    : 1
min keysize  : 16
max keysize  : 32
ivsize       : 16
chunksize    : 16
walksize     : 16

name         : hmac(sha256)
driver       : hmac(sha256-ni)
module       : hmac
priority     : 250
refcnt       : 1
selftest     : passed
internal     : no
type         : shash
blocksize    : 64
digestsize   : 32

name         : sha256
driver       : sha256-ni
module       : sha256_ssse3
priority     : 250
refcnt       : 2
selftest     : passed
internal     : no
type         : shash
blocksize    : 64
digestsize   : 32

name         : ctr(aes)
driver       : ctr-aes-aesni
module       : aesni_intel
priority     : 400
refcnt       : 1
selftest     : passed
internal     : no
type         : skcipher
async        : yes
blocksize    : 1
min keysize  : 16
max keysize  : 32
ivsize       : 16
chunksize    : 16
walksize     : 16

name         : __ctr(aes)
driver       : __ctr-aes-aesni
module       : aesni_intel
priority     : 400
refcnt       : 2
selftest     : passed
internal     : yes
type         : skcipher
async        : no
blocksize    : 1
min keysize  : 16
max keysize  : 32
ivsize       : 16
chunksize    : 16
walksize     : 16

name         : aes
driver       : aes-aesni
module       : aesni_intel
priority     : 300
refcnt       : 2
selftest     : passed
internal     : no
type         : cipher
blocksize    : 16
min keysize  : 16
max keysize  : 32

name         : aes
driver       : aes-generic
module       : kernel
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : cipher
blocksize    : 16
min keysize  : 16
max keysize  : 32

name         : hmac(sha256)
driver       : hmac(sha256-generic)
module       : hmac
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : shash
blocksize    : 64
digestsize   : 32
"""


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def host_has_af_alg() -> bool:
    try:
        socket.socket(socket.AF_ALG, socket.SOCK_SEQPACKET, 0).close()
    except OSError:
        return False
    return True


def kernel_version() -> tuple[int, int]:
    """The running kernel's (major, minor), e.g. (6, 12) for 6.12.113-um."""
    major, minor = os.uname().release.split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


class FakeAlgSocket:
    """An AF_ALG socket whose ``bind`` or ``setsockopt`` fails with a chosen errno."""

    instances: ClassVar[list[FakeAlgSocket]] = []

    def __init__(self, bind_errno: int = 0, setkey_errno: int = 0) -> None:
        self.bind_errno = bind_errno
        self.setkey_errno = setkey_errno
        self.closed = False
        FakeAlgSocket.instances.append(self)

    def bind(self, address: tuple[str, str]) -> None:
        if self.bind_errno:
            raise OSError(self.bind_errno, os.strerror(self.bind_errno))

    def setsockopt(self, level: int, option: int, value: bytes) -> None:
        if self.setkey_errno:
            raise OSError(self.setkey_errno, os.strerror(self.setkey_errno))

    def accept(self) -> tuple[Any, Any]:
        raise AssertionError("a simulated refusal must stop before accept()")

    def close(self) -> None:
        self.closed = True


def fake_kernel(monkeypatch: pytest.MonkeyPatch, **errors: int) -> None:
    """A kernel with AF_ALG whose sockets fail as ``errors`` say (see :class:`FakeAlgSocket`)."""
    FakeAlgSocket.instances = []
    monkeypatch.setattr(sockets, "open_alg_socket", lambda: FakeAlgSocket(**errors))
    monkeypatch.setattr(procfs, "read_proc_crypto", lambda: parse_proc_crypto(AESNI))


def no_af_alg(*args: object) -> socket.socket:
    raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")


def deny_af_alg(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel without AF_ALG, also where the host has it (kstream's sockets are made by
    ``_socket``, the report's by ``socket``)."""
    monkeypatch.setattr(_socket, "socket", no_af_alg)
    monkeypatch.setattr(socket, "socket", no_af_alg)
