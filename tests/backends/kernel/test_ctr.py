"""The kernel's AES-CTR stream (AF_ALG ``ctr(aes)``) against OpenSSL and an independent
reference: every transfer (sendmsg, splice, sendfile), the lockstep, and closing.

Tests marked ``kernel`` run where AF_ALG exists: natively, or inside each User Mode Linux
kernel the harness finds (tests/uml).
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import socket
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st
from kernelsim import deny_af_alg, open_fds
from reference import ctr, keystream, split

from kstream.backends.base import CHUNK, CipherOptions, Transfer
from kstream.backends.kernel.backend import ctr_aes_drivers
from kstream.backends.kernel.ctr import AUTO_FD_TRANSFER, KernelStream, fd_kind
from kstream.backends.kernel.sockets import bind_tfm, drivers_by_name_refused
from kstream.errors import BackendUnavailable, IOFailure, UsageError
from kstream.selftest import NIST_CTR_VECTORS, pieces_of

kernel = pytest.mark.kernel
KEY_SIZES = (16, 24, 32)
TRANSFERS: tuple[Transfer, ...] = ("auto", "sendmsg", "splice", "sendfile")


def openssl_ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def through_kernel(
    key: bytes, iv: bytes, pieces: Sequence[bytes], options: CipherOptions | None = None
) -> bytes:
    stream = KernelStream(key, iv, options)
    try:
        return b"".join(stream.update(piece) for piece in pieces) + stream.finalize()
    finally:
        stream.close()


def drain_fd(stream: KernelStream, fd: int, max_bytes: int = 1 << 20) -> bytes:
    """What the pipeline does: update_from_fd until it consumes nothing, then finalize."""
    out = []
    while True:
        chunk, consumed = stream.update_from_fd(fd, max_bytes)
        out.append(chunk)
        if consumed == 0:
            return b"".join(out) + stream.finalize()


class PipeWriter:
    """A pipe whose write end a thread fills with ``pieces``, then closes."""

    def __init__(self, pieces: Iterator[bytes] | Sequence[bytes]) -> None:
        self.read_fd, self._write_fd = os.pipe()
        self._pieces = pieces
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for piece in self._pieces:
                with memoryview(piece) as view:
                    done = 0
                    while done < len(view):
                        done += os.write(self._write_fd, view[done:])
        finally:
            os.close(self._write_fd)

    def close(self) -> None:
        os.close(self.read_fd)  # unblocks the writer with EPIPE if the reader stopped early
        self._thread.join(timeout=60)

    def __enter__(self) -> PipeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def test_arguments_checked_before_any_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    deny_af_alg(monkeypatch)
    with pytest.raises(ValueError, match="IV must be 16 bytes"):
        KernelStream(bytes(16), bytes(15))
    with pytest.raises(UsageError, match="unknown transfer mode 'mmap'; choose auto, sendmsg"):
        KernelStream(bytes(16), bytes(16), CipherOptions(transfer="mmap"))  # type: ignore[arg-type]


def test_fd_kind(tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    left, right = socket.socketpair()
    try:
        with open(tmp_path / "f", "wb") as f:
            assert fd_kind(f.fileno()) == "file"
        assert fd_kind(read_fd) == fd_kind(write_fd) == "pipe"
        assert fd_kind(left.fileno()) == "other"
        os.close(write_fd)
        write_fd = -1
        os.close(read_fd)
        assert fd_kind(read_fd) == "other"  # closed
    finally:
        left.close()
        right.close()
        if write_fd >= 0:
            os.close(write_fd)


# -- in a kernel with AF_ALG --------------------------------------------------------------------


@kernel
@pytest.mark.parametrize("vector", NIST_CTR_VECTORS, ids=lambda v: v.section)
def test_nist_vectors(vector: Any) -> None:
    assert through_kernel(vector.key, vector.counter, [vector.input]) == vector.output
    one_byte = [vector.input[i : i + 1] for i in range(len(vector.input))]
    assert through_kernel(vector.key, vector.counter, one_byte) == vector.output


@kernel
@pytest.mark.parametrize("size", KEY_SIZES)
@pytest.mark.parametrize("length", [0, 1, 15, 16, 17, 4095, CHUNK - 1, CHUNK, CHUNK + 1, 500_003])
def test_matches_openssl_for_every_key_size(size: int, length: int) -> None:
    key, iv, data = os.urandom(size), os.urandom(16), os.urandom(length)
    expected = openssl_ctr(key, iv, data)
    assert through_kernel(key, iv, [data]) == expected
    assert through_kernel(key, iv, list(pieces_of(data, [17, 1, 15, 4096, 70000]))) == expected


@kernel
@settings(max_examples=20, deadline=None, derandomize=True)
@given(
    size=st.sampled_from(KEY_SIZES),
    length=st.integers(0, 3 * CHUNK + 100),
    cuts=st.lists(st.integers(0, 1 << 20), max_size=25),
    seed=st.integers(0, 1 << 32),
)
def test_any_chunking_matches_the_reference(
    size: int, length: int, cuts: list[int], seed: int
) -> None:
    rng = random.Random(seed)
    key, iv, data = rng.randbytes(size), rng.randbytes(16), rng.randbytes(length)
    assert through_kernel(key, iv, split(data, cuts)) == ctr(key, iv, data)


@kernel
def test_one_byte_pieces_and_a_mega_piece() -> None:
    key, iv = os.urandom(32), os.urandom(16)
    data = os.urandom(4000)
    assert through_kernel(key, iv, [data[i : i + 1] for i in range(len(data))]) == ctr(
        key, iv, data
    )
    big = os.urandom(5 * 1024 * 1024 + 3)  # one update far above SO_SNDBUF
    assert through_kernel(key, iv, [b"x", big]) == openssl_ctr(key, iv, b"x" + big)


@kernel
@pytest.mark.parametrize(
    "iv_hex",
    [
        "ffffffffffffffffffffffffffffffff",
        "0123456789abcdef00000000fffffff0",  # 32-bit carry
        "0123456789abcdefffffffffffffff00",  # 64-bit carry
    ],
)
def test_counter_wraps_like_openssl(iv_hex: str) -> None:
    key, iv = os.urandom(16), bytes.fromhex(iv_hex)
    data = os.urandom(16 * 300 + 7)
    expected = ctr(key, iv, data)
    assert expected == openssl_ctr(key, iv, data)
    assert through_kernel(key, iv, list(pieces_of(data, [1, 15, 17, 33]))) == expected


@kernel
def test_decrypt_is_the_same_operation() -> None:
    key, iv, data = os.urandom(24), os.urandom(16), os.urandom(100_001)
    ciphertext = through_kernel(key, iv, list(pieces_of(data, [CHUNK + 3])))
    assert ciphertext == openssl_ctr(key, iv, data)
    assert through_kernel(key, iv, list(pieces_of(ciphertext, [7, 20000]))) == data
    assert openssl_ctr(key, iv, ciphertext) == data


@kernel
def test_a_stream_far_larger_than_the_socket_buffer() -> None:
    """64 MiB in one stream: hundreds of times SO_SNDBUF, so nothing may queue up."""
    with open("/proc/sys/net/core/wmem_default") as f:
        sndbuf = int(f.read())
    total = 64 * 1024 * 1024 + 13
    assert total > 100 * sndbuf
    key, iv = os.urandom(16), os.urandom(16)
    source = os.urandom(2 * 1024 * 1024)
    sizes = [1 << 20, 3 * CHUNK + 1, 17, 300_001, CHUNK]
    kernel_stream = KernelStream(key, iv)
    reference = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    kernel_hash, reference_hash = hashlib.sha256(), hashlib.sha256()
    done = index = 0
    try:
        while done < total:
            size = min(sizes[index % len(sizes)], total - done)
            start = (index * 7919) % (len(source) - size)
            piece = source[start : start + size]
            kernel_hash.update(kernel_stream.update(piece))
            reference_hash.update(reference.update(piece))
            done += size
            index += 1
        kernel_hash.update(kernel_stream.finalize())
        reference_hash.update(reference.finalize())
    finally:
        kernel_stream.close()
    assert kernel_hash.hexdigest() == reference_hash.hexdigest()


def _counting(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    calls = {"splice": 0, "sendfile": 0}
    real_splice, real_sendfile = os.splice, os.sendfile

    def splice(*args: Any, **kwargs: Any) -> int:
        calls["splice"] += 1
        return real_splice(*args, **kwargs)

    def sendfile(*args: Any, **kwargs: Any) -> int:
        calls["sendfile"] += 1
        return real_sendfile(*args, **kwargs)

    monkeypatch.setattr(os, "splice", splice)
    monkeypatch.setattr(os, "sendfile", sendfile)
    return calls


ACCEPTS = {
    ("auto", "pipe"): AUTO_FD_TRANSFER["pipe"] == "splice",
    ("auto", "file"): AUTO_FD_TRANSFER["file"] == "sendfile",
    ("sendmsg", "pipe"): False,
    ("sendmsg", "file"): False,
    ("splice", "pipe"): True,
    ("splice", "file"): False,
    ("sendfile", "pipe"): False,
    ("sendfile", "file"): True,
}


@kernel
@pytest.mark.parametrize("transfer", TRANSFERS)
def test_pipe_input_for_each_transfer(monkeypatch: pytest.MonkeyPatch, transfer: Transfer) -> None:
    key, iv = os.urandom(32), os.urandom(16)
    data = os.urandom(3 * 1024 * 1024 + 5)
    calls = _counting(monkeypatch)
    stream = KernelStream(key, iv, CipherOptions(transfer=transfer))
    with PipeWriter(pieces_of(data, [1, 4095, 65537, 17, 200_000])) as pipe:
        assert stream.accepts_fd(pipe.read_fd) is ACCEPTS[(transfer, "pipe")]
        out = drain_fd(stream, pipe.read_fd, max_bytes=16 * CHUNK)
    assert out == openssl_ctr(key, iv, data)
    spliced = ACCEPTS[(transfer, "pipe")]
    assert (calls["splice"] > 0) is spliced and calls["sendfile"] == 0


@kernel
@pytest.mark.parametrize("transfer", TRANSFERS)
@pytest.mark.parametrize("length", [0, 5, 16, 8 * 1024 * 1024 + 13])
def test_file_input_for_each_transfer(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, transfer: Transfer, length: int
) -> None:
    key, iv = os.urandom(16), os.urandom(16)
    data = os.urandom(length)
    path = tmp_path / "input"
    path.write_bytes(data)
    calls = _counting(monkeypatch)
    stream = KernelStream(key, iv, CipherOptions(transfer=transfer))
    fd = os.open(path, os.O_RDONLY)
    try:
        assert stream.accepts_fd(fd) is ACCEPTS[(transfer, "file")]
        out = drain_fd(stream, fd, max_bytes=1_000_003)  # odd: requests end off-block
    finally:
        os.close(fd)
    assert out == openssl_ctr(key, iv, data)
    sent = ACCEPTS[(transfer, "file")] and length >= 16
    assert (calls["sendfile"] > 0) is sent and calls["splice"] == 0


@kernel
def test_sendfile_starts_mid_file_and_keeps_the_offset(tmp_path: Path) -> None:
    key, iv = os.urandom(16), os.urandom(16)
    data = os.urandom(300_000)
    path = tmp_path / "input"
    path.write_bytes(data)
    with open(path, "rb") as f:
        f.seek(1001)
        stream = KernelStream(key, iv, CipherOptions(transfer="sendfile"))
        out = drain_fd(stream, f.fileno(), max_bytes=CHUNK + 1)
        assert f.tell() == len(data)
    assert out == openssl_ctr(key, iv, data[1001:])


@kernel
def test_socket_input_is_read_not_spliced() -> None:
    key, iv, data = os.urandom(16), os.urandom(16), os.urandom(100_000)
    left, right = socket.socketpair()
    with left, right:
        stream = KernelStream(key, iv)
        assert not stream.accepts_fd(left.fileno())

        def send() -> None:
            right.sendall(data)
            right.shutdown(socket.SHUT_WR)

        writer = threading.Thread(target=send)
        writer.start()
        out = drain_fd(stream, left.fileno())
        writer.join()
    assert out == openssl_ctr(key, iv, data)


@kernel
@pytest.mark.parametrize(
    "iv_hex",
    [
        "fffffffffffffffffffffffffffff000",  # wraps 2^128 after 4096 blocks
        "00000000000000001111111ffffff000",
        "5a1f0c3e9b7d2846a0e1c2d3b4f50617",  # arbitrary
    ],
)
def test_no_keystream_reuse_across_chunks_and_requests(tmp_path: Path, iv_hex: str) -> None:
    """Every 16-byte keystream block is AES(key, IV + i): no counter is ever used twice.

    Zeros encrypt to the bare keystream. It is produced as one long stream four ways that cut
    it at many odd places: many small and odd update calls (partial blocks held back between
    sends); a pipe written in odd pieces (splice); a regular file read with an odd max_bytes
    (sendfile, where each call ends a kernel request); and a pipe read with plain reads.
    """
    key, iv = os.urandom(16), bytes.fromhex(iv_hex)
    nblocks = 12_000
    length = nblocks * 16 - 5
    zeros = bytes(length)
    expected = keystream(key, iv, nblocks)[:length]
    path = tmp_path / "zeros"
    path.write_bytes(zeros)

    outputs = {
        "update": through_kernel(key, iv, list(pieces_of(zeros, [1, 15, 17, 31, 4097, 7, 65]))),
    }
    stream = KernelStream(key, iv, CipherOptions(transfer="splice"))
    with PipeWriter(pieces_of(zeros, [3, 1000, 17, 5000, 33])) as pipe:
        outputs["splice"] = drain_fd(stream, pipe.read_fd, max_bytes=4099)
    stream = KernelStream(key, iv, CipherOptions(transfer="sendfile"))
    with open(path, "rb") as f:
        outputs["sendfile"] = drain_fd(stream, f.fileno(), max_bytes=4099)
    stream = KernelStream(key, iv, CipherOptions(transfer="sendmsg"))
    with PipeWriter(pieces_of(zeros, [9, 20000])) as pipe:
        outputs["read"] = drain_fd(stream, pipe.read_fd, max_bytes=999)

    for name, out in outputs.items():
        assert out == expected, name
        blocks = [out[i : i + 16] for i in range(0, length - 15, 16)]
        assert len(set(blocks)) == len(blocks) == nblocks - 1, name


@kernel
def test_every_listed_driver_by_name() -> None:
    drivers = ctr_aes_drivers()
    assert drivers
    key, iv, data = os.urandom(32), os.urandom(16), os.urandom(70_001)
    if drivers_by_name_refused():
        # Linux 7.3's default allows algorithm names only, even to root: each driver by name
        # is refused with what to do instead, and the pick (listed first) is ctr(aes).
        for driver in drivers:
            with pytest.raises(BackendUnavailable, match="refuses ctr.aes. drivers by name"):
                KernelStream(key, iv, CipherOptions(driver=driver.driver))
        stream = KernelStream(key, iv)
        assert stream.description == f"kernel {drivers[0].driver}"
        assert stream.update(data) + stream.finalize() == openssl_ctr(key, iv, data)
        return
    for driver in drivers:
        stream = KernelStream(key, iv, CipherOptions(driver=driver.driver))
        assert stream.description == f"kernel {driver.driver}"
        out = stream.update(data) + stream.finalize()
        assert out == openssl_ctr(key, iv, data), driver.driver


@kernel
def test_a_driver_of_another_algorithm_is_refused() -> None:
    before = open_fds()
    try:
        with bind_tfm("skcipher", "ecb(aes)"):
            pass
    except BackendUnavailable:
        pytest.skip("this kernel has no ecb(aes) to confuse with ctr(aes)")
    with pytest.raises(UsageError, match=r"^driver 'ecb\(aes\)' implements ecb\(aes\), not ctr"):
        KernelStream(bytes(16), bytes(16), CipherOptions(driver="ecb(aes)"))
    assert open_fds() == before


@kernel
def test_all_fds_closed_after_close_finalize_and_errors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    before = open_fds()
    stream = KernelStream(bytes(16), bytes(16))
    assert len(open_fds() - before) == 2  # the tfm and the op socket
    stream.update(b"abc")
    stream.close()
    stream.close()  # idempotent
    assert open_fds() == before
    with pytest.raises(ValueError, match="cipher stream is closed"):
        stream.update(b"x")

    stream = KernelStream(bytes(16), bytes(16))
    assert stream.finalize() == b""  # nothing in, nothing out
    assert open_fds() == before
    with pytest.raises(ValueError, match="cipher stream is finalized"):
        stream.finalize()

    with KernelStream(bytes(16), bytes(16)) as stream:
        stream.update(bytes(100))
    assert open_fds() == before

    # an input fd that fails mid-stream
    stream = KernelStream(bytes(16), bytes(16), CipherOptions(transfer="sendmsg"))
    directory = os.open(tmp_path, os.O_RDONLY)
    try:
        with pytest.raises(IOFailure, match="^cannot read the input: Is a directory"):
            stream.update_from_fd(directory, 100)
    finally:
        os.close(directory)
    stream.close()
    assert open_fds() == before

    # the kernel fails after accept(): everything opened so far is closed again
    def refuse(*args: object, **kwargs: object) -> int:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(socket.socket, "sendmsg_afalg", refuse)
    with pytest.raises(BackendUnavailable, match="failed while starting the stream: Invalid"):
        KernelStream(bytes(16), bytes(16))
    assert open_fds() == before


@kernel
@pytest.mark.skipif(
    os.environ.get("KSTREAM_IN_UML") != "1", reason="changes a sysctl: only inside User Mode Linux"
)
@pytest.mark.parametrize("wmem_default", [4608, 8192, 70_000])
def test_a_small_socket_buffer_does_not_hang(tmp_path: Path, wmem_default: int) -> None:
    """A send larger than the op socket's buffer would wait for a recv that never comes."""
    key, iv, data = os.urandom(16), os.urandom(16), os.urandom(300_001)
    path = tmp_path / "input"
    path.write_bytes(data)
    sysctl = Path("/proc/sys/net/core/wmem_default")
    saved = sysctl.read_text()
    results: dict[str, bytes] = {}

    def run() -> None:
        results["update"] = through_kernel(key, iv, [data])
        stream = KernelStream(key, iv, CipherOptions(transfer="sendfile"))
        with open(path, "rb") as f:
            results["sendfile"] = drain_fd(stream, f.fileno())
        stream = KernelStream(key, iv, CipherOptions(transfer="splice"))
        with PipeWriter([data]) as pipe:
            results["splice"] = drain_fd(stream, pipe.read_fd)

    sysctl.write_text(str(wmem_default))
    try:
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        worker.join(timeout=60)
    finally:
        sysctl.write_text(saved)
    assert not worker.is_alive(), "the kernel stream hung with a small SO_SNDBUF"
    expected = openssl_ctr(key, iv, data)
    assert results == {"update": expected, "sendfile": expected, "splice": expected}


@kernel
@pytest.mark.parametrize("transfer", ["splice", "sendmsg"])
def test_a_non_blocking_pipe_is_waited_for(transfer: Transfer) -> None:
    """stdin may arrive O_NONBLOCK: an empty pipe means wait for the writer, not EOF."""
    key, iv = os.urandom(16), os.urandom(16)
    pieces = [os.urandom(n) for n in (5, 70_000, 17, 1)]

    def slowly() -> Iterator[bytes]:
        for piece in pieces:
            threading.Event().wait(0.05)
            yield piece

    stream = KernelStream(key, iv, CipherOptions(transfer=transfer))
    with PipeWriter(slowly()) as pipe:
        os.set_blocking(pipe.read_fd, False)
        out = drain_fd(stream, pipe.read_fd)
    assert out == openssl_ctr(key, iv, b"".join(pieces))
