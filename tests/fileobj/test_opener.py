"""kstream.open's ways to unlock a file and to choose a backend; keyring keys through the
kernel (inside User Mode Linux when the host has no AF_ALG)."""

from __future__ import annotations

import io
import logging
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from kernelsim import kernel_version
from reference import unframe
from sealed import PASSPHRASE, S, seal_file

import kstream
from kstream.backends.base import counter_add
from kstream.backends.openssl import OpenSSLBackend
from kstream.errors import UsageError
from kstream.format import Header


def test_a_resolved_backend_object_is_used_as_it_is(key_bytes: bytes) -> None:
    plain = os.urandom(4 * S + 1)
    blob = seal_file(plain, key_bytes)
    ivs: list[bytes] = []

    class Watched(OpenSSLBackend):
        def open(self, key: kstream.Key, iv: bytes, options: Any = None) -> Any:
            ivs.append(iv)
            return super().open(key, iv, options)

    header = Header.parse(blob)
    with kstream.open(io.BytesIO(blob), key=kstream.Key(key_bytes), backend=Watched()) as f:
        assert f.read_at(2 * S + 5, 3) == plain[2 * S + 5 : 2 * S + 8]
    # no cipher at open (checking the last segment needs none); the read's starts at the
    # counter of the AES block that holds its first byte
    assert ivs == [counter_add(header.iv, 2 * S // 16)]


def test_notices_go_to_the_kstream_logger_or_to_notify(
    key_bytes: bytes, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kstream.backends.base import Availability
    from kstream.backends.kernel import KernelBackend

    monkeypatch.setattr(
        KernelBackend, "probe", lambda self: Availability("kernel", False, "no AF_ALG here")
    )
    blob = seal_file(b"data", key_bytes)
    with caplog.at_level(logging.INFO, logger="kstream"):
        kstream.open(io.BytesIO(blob), key=kstream.Key(key_bytes)).close()
    assert "kernel backend unavailable here; using openssl" in caplog.text
    said: list[str] = []
    kstream.open(io.BytesIO(blob), key=kstream.Key(key_bytes), notify=said.append).close()
    assert said and said[0].startswith("kernel backend unavailable")


def test_a_key_read_from_a_file_is_wiped_at_close(
    key_file: Path, monkeypatch: pytest.MonkeyPatch, key_bytes: bytes
) -> None:
    wiped: list[kstream.Key] = []
    real = kstream.Key.wipe

    def wipe(self: kstream.Key) -> None:
        wiped.append(self)
        real(self)

    monkeypatch.setattr(kstream.Key, "wipe", wipe)
    f = kstream.open(io.BytesIO(seal_file(b"x", key_bytes)), key_file=key_file)
    assert not wiped
    f.close()
    assert len(wiped) == 1
    mine = kstream.Key(key_bytes)
    kstream.open(io.BytesIO(seal_file(b"x", key_bytes)), key=mine).close()
    assert len(wiped) == 1  # the caller's key stays the caller's


def test_errors_name_the_argument(tmp_path: Path, passphrase_file: Path) -> None:
    with pytest.raises(kstream.InvalidKey, match="key file .* is empty"):
        (tmp_path / "empty").write_bytes(b"")
        kstream.open(io.BytesIO(), key_file=tmp_path / "empty")
    blob = seal_file(b"x", os.urandom(32))
    with pytest.raises(UsageError, match="encrypted with a key, not a passphrase"):
        kstream.open(io.BytesIO(blob), passphrase_file=passphrase_file)
    with pytest.raises(UsageError, match="cache_segments must be at least 1"):
        kstream.open(io.BytesIO(blob), passphrase=PASSPHRASE, cache_segments=0)


@pytest.mark.kernel
def test_a_keyring_key_reads_and_writes_through_the_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A logon key by name: never read into the process, each read's cipher keyed by
    serial and started through the IV at the counter where the read starts."""
    if kernel_version() < (6, 2):
        pytest.skip("ALG_SET_KEY_BY_KEY_SERIAL needs Linux >= 6.2")
    from kstream.backends.kernel import KernelBackend
    from kstream.keys import keyring

    raw = os.urandom(32)
    name = f"t{uuid.uuid4().hex[:12]}"
    serial = keyring.add_key("logon", keyring.PREFIX + name, bytearray(raw), "user")
    try:

        def forbidden(ref: object) -> bytearray:
            raise AssertionError("kstream tried to read the logon key")

        monkeypatch.setattr(keyring, "read_key_payload", forbidden)
        ivs: list[bytes] = []
        real_open = KernelBackend.open

        def watched(self: KernelBackend, key: kstream.Key, iv: bytes, options: Any = None) -> Any:
            if key.keyring_ref is not None:  # (a key by bytes at the end, not watched)
                ivs.append(iv)
            return real_open(self, key, iv, options)

        monkeypatch.setattr(KernelBackend, "open", watched)
        plain = os.urandom(6 * S + 5)
        blob = seal_file(plain, raw)
        header = Header.parse(blob)
        (tmp_path / "x.kst").write_bytes(blob)
        with kstream.open(tmp_path / "x.kst", key_name=name) as f:
            assert f.read_at(3 * S - 2, 4) == plain[3 * S - 2 : 3 * S + 2]
            f.seek(5 * S)
            assert f.read() == plain[5 * S :]
        # a cipher per read, at the counter of the AES block that holds its first byte
        assert ivs == [counter_add(header.iv, i // 16) for i in (3 * S - 16, 5 * S)]
        with kstream.open(tmp_path / "y.kst", "wb", key_name=name, segment_size=S) as w:
            w.write(plain)
        written = (tmp_path / "y.kst").read_bytes()
        from reference import ctr

        assert ctr(raw, Header.parse(written).iv, unframe(written[32:])) == plain
        with kstream.open(tmp_path / "y.kst", key=kstream.Key(raw), backend="kernel") as back:
            assert back.read() == plain
    finally:
        keyring.keyctl(keyring.KEYCTL_INVALIDATE, serial)
