"""``kstream selftest``'s file rows: whole kstream files through every driver, each way.

The vectors in :mod:`kstream.selftest` check the ciphers; these check the code around them
that every ``encrypt`` and ``decrypt`` runs (codec, drivers, plan). Each encryption is opened
by :func:`reference_open`, written from the format's specification with one-shot OpenSSL
calls and none of kstream's codec, and each driver decrypts a file so checked. Inputs: a
small file (read whole) and one of three segments and a bit (split by the parallel ranges,
pipelined by the stream driver).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Literal, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kstream.format import DEFAULT_SEGMENT, HEADER_SIZE
from kstream.keys.key import Key

if TYPE_CHECKING:  # the API (asyncio, the engine) loads when a row runs
    from kstream.api import BackendName, Session

Status = Literal["ok", "FAIL", "error"]
#: (vector, feed, status, detail) of one row; the caller adds backend and implementation.
PathRow = tuple[str, str, Status, str]
_LABEL = b"kstream v1 segment MAC key: GMAC-AES-256\x00"
_SIZES = {"small file": 70_001, "3 segments and a bit": 3 * DEFAULT_SEGMENT + 4_099}


def reference_open(key: bytes, blob: bytes) -> bytes:
    """The plaintext of a key-encrypted kstream file, or ValueError; from the spec alone."""
    header, pos = blob[:HEADER_SIZE], HEADER_SIZE
    if len(header) < HEADER_SIZE or header[:8] != b"KSTREAM\x1a":
        raise ValueError("no kstream header")
    segment = int.from_bytes(header[12:16], "big")
    gmac = AESGCM(hmac.new(key, _LABEL + header + b"\x01", hashlib.sha256).digest())
    ciphertext = bytearray()
    for index in range(len(blob)):
        word = int.from_bytes(blob[pos : pos + 4], "big")
        last, size = bool(word >> 31), word & 0x7FFFFFFF
        if size > segment or (not last and size != segment):
            raise ValueError(f"segment {index}: bad frame")
        body = blob[pos + 4 : pos + 4 + size]
        tag = blob[pos + 4 + size : pos + 20 + size]
        try:
            gmac.decrypt(index.to_bytes(11, "big") + bytes([last]), tag, body)
        except InvalidTag:
            raise ValueError(f"segment {index}: tag does not verify") from None
        ciphertext += body
        pos += 20 + size
        if last:
            break
    if pos != len(blob):
        raise ValueError("data after the last segment")
    ctr = Cipher(algorithms.AES(key), modes.CTR(header[16:32])).decryptor()
    return ctr.update(bytes(ciphertext)) + ctr.finalize()


def _run(coro_fn: Callable[[], object]) -> None:
    from kstream.loop import loop_factory

    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(coro_fn())  # type: ignore[arg-type]


def _small(encrypt: bool, src: str, dst: str, key: Key, backend: str) -> None:
    from kstream.engine.plan import RunOptions
    from kstream.engine.small import process_small_file
    from kstream.keys.unlock import Secret

    run = RunOptions(notify=lambda _: None, backend=backend)
    process_small_file(encrypt, src, dst, Secret(key=key), run, raw_iv=None, force=True)


def _session(key: Key, backend: str) -> Session:
    from kstream.api import Session

    return Session(key=key, backend=cast("BackendName", backend), notify=lambda _: None)


def _ranges(encrypt: bool, src: str, dst: str, key: Key, backend: str) -> None:
    session = _session(key, backend)
    transform = session.encrypt_file if encrypt else session.decrypt_file
    _run(lambda: transform(src, dst, force=True, jobs=2))


def _stream(encrypt: bool, src: str, dst: str, key: Key, backend: str) -> None:
    """From a pipe, which only the fd stream driver takes."""
    session = _session(key, backend)
    transform = session.encrypt_file if encrypt else session.decrypt_file
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        try:
            with open(src, "rb") as f, open(write_fd, "wb") as pipe:
                while chunk := f.read(1 << 16):
                    pipe.write(chunk)
        except BrokenPipeError:  # the run failed and closed its end: that failure is the row
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        _run(lambda: transform(read_fd, dst, force=True))
    finally:
        os.close(read_fd)
        writer.join(10)


def _iterable(encrypt: bool, src: str, dst: str, key: Key, backend: str) -> None:
    session = _session(key, backend)

    async def pieces() -> AsyncIterator[bytes]:
        with open(src, "rb") as f:
            while chunk := f.read(100_003):
                yield chunk

    async def go() -> None:
        through = session.encrypt_stream if encrypt else session.decrypt_stream
        with open(dst, "wb") as out:
            async for part in through(pieces()):
                out.write(part)

    _run(go)


Driver = Callable[[bool, str, str, Key, str], None]
_DRIVERS: dict[str, Driver] = {
    "small-file path": _small,
    "parallel ranges": _ranges,
    "fd stream (pipe)": _stream,
    "async iterable": _iterable,
}


def _drivers_for(size: int) -> Iterator[tuple[str, Driver]]:
    from kstream.engine.small import SMALL

    for name, driver in _DRIVERS.items():
        if name != "small-file path" or size <= SMALL:
            yield name, driver


def _through(
    driver: Driver, encrypt: bool, src: str, out: str, key_bytes: bytes, backend: str, plain: bytes
) -> tuple[Status, str]:
    """One run of ``driver``, judged: an encryption by :func:`reference_open`, a
    decryption by its bytes."""
    try:
        driver(encrypt, src, out, Key(key_bytes), backend)
        with open(out, "rb") as f:
            got = f.read()
        back = reference_open(key_bytes, got) if encrypt else got
    except Exception as exc:  # any error on a path users run is a failure
        return "error", str(exc) or type(exc).__name__
    return ("ok", "") if back == plain else ("FAIL", "the plaintext does not come back")


def path_rows(backend: str) -> list[PathRow]:
    """Encrypt and decrypt each input through each driver with ``backend``; each driver
    decrypts the first encryption that the reference opened."""
    key_bytes = hashlib.sha256(b"kstream selftest key").digest()
    rows: list[PathRow] = []
    with tempfile.TemporaryDirectory(prefix="kstream-selftest-") as tmp:
        src, out = os.path.join(tmp, "plain"), os.path.join(tmp, "out")
        for label, size in _SIZES.items():
            plain = hashlib.shake_256(label.encode()).digest(size)
            with open(src, "wb") as f:
                f.write(plain)
            checked: str | None = None
            for name, driver in _drivers_for(size):
                for encrypt in (True, False):
                    where = (label, f"{name}, {'encrypt' if encrypt else 'decrypt'}")
                    if not encrypt and checked is None:
                        rows.append((*where, "error", "no encryption to decrypt"))
                        continue
                    status, detail = _through(
                        driver,
                        encrypt,
                        src if encrypt else checked or "",
                        out,
                        key_bytes,
                        backend,
                        plain,
                    )
                    rows.append((*where, status, detail))
                    if encrypt and status == "ok" and checked is None:
                        checked = os.path.join(tmp, "checked.kst")
                        os.replace(out, checked)
    return rows
