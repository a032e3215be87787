"""Key loading, generation and saving; no key bytes may ever show."""

from __future__ import annotations

import os
import pickle
import stat
from pathlib import Path

import pytest

from kstream.errors import InvalidKey, UsageError
from kstream.format import CipherSuite
from kstream.keys.key import Key

RAW = bytes(range(32))


@pytest.mark.parametrize("size", [16, 24, 32])
def test_raw_key_file(tmp_path: Path, size: int) -> None:
    path = tmp_path / "k"
    path.write_bytes(RAW[:size])
    key = Key.from_file(path)
    assert key.material() == RAW[:size]
    assert key.suite is CipherSuite.for_key_size(size)


@pytest.mark.parametrize(
    "text",
    [
        RAW.hex(),
        RAW.hex() + "\n",
        RAW.hex().upper(),
        " ".join(RAW.hex()[i : i + 8] for i in range(0, 64, 8)) + "\r\n",
    ],
)
def test_hex_key_file_ignores_whitespace(tmp_path: Path, text: str) -> None:
    path = tmp_path / "k"
    path.write_text(text)
    assert Key.from_file(path).material() == RAW


def test_raw_bytes_that_happen_to_be_hex_text(tmp_path: Path) -> None:
    # 32 hex characters: read as a 16-byte hex key (documented: hex wins).
    path = tmp_path / "k"
    path.write_bytes(b"00112233445566778899aabbccddeeff")
    assert Key.from_file(path).material() == bytes.fromhex("00112233445566778899aabbccddeeff")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"x" * 17, "holds 17 bytes"),
        (b"ab" * 15, "holds 30 bytes"),
        (b"\x00" * 5000, "too large"),
    ],
)
def test_bad_key_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "k"
    path.write_bytes(content)
    with pytest.raises(InvalidKey, match=message) as info:
        Key.from_file(path)
    assert str(path) in str(info.value)


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidKey, match="cannot read key file .*No such file"):
        Key.from_file(tmp_path / "nope")


def test_from_fd() -> None:
    r, w = os.pipe()
    os.write(w, RAW[:24].hex().encode() + b"\n")
    os.close(w)
    try:
        assert Key.from_fd(r).material() == RAW[:24]
    finally:
        os.close(r)


@pytest.mark.parametrize("bits", [128, 192, 256])
def test_generate_and_save(tmp_path: Path, bits: int) -> None:
    key = Key.generate(bits)
    assert key.bits == bits
    assert Key.generate(bits).material() != key.material()
    path = tmp_path / "k"
    key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Key.from_file(path).material() == key.material()
    with pytest.raises(UsageError, match="already exists"):
        Key.generate(bits).save(path)
    assert Key.from_file(path).material() == key.material()


def test_generate_rejects_odd_sizes() -> None:
    with pytest.raises(UsageError, match="128, 192 or 256"):
        Key.generate(64)


def test_no_key_material_in_repr_str_or_pickle() -> None:
    key = Key(RAW)
    for text in (repr(key), str(key), f"{key}", repr([key])):
        assert RAW.hex() not in text and "AES-256" in text
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(key)


def test_wipe_overwrites() -> None:
    key = Key(RAW[:16])
    key.wipe()
    assert key.material() == bytes(16)


def test_generate_uses_getrandom_not_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """os.urandom (getrandom(2)) is the source: no file is opened, its bytes are the key."""
    import builtins

    def no_open(*args: object, **kw: object) -> object:
        raise AssertionError(f"opened {args[0]!r}")

    monkeypatch.setattr(builtins, "open", no_open)
    monkeypatch.setattr(os, "urandom", lambda n: bytes(range(n)))  # as Key.generate sees it
    assert Key.generate(256).hex_text() == bytes(range(32)).hex().encode() + b"\n"


def test_readable_by_others(tmp_path: Path) -> None:
    from kstream.keys.key import readable_by_others

    path = tmp_path / "secret"
    path.write_text("x")
    for mode in (0o600, 0o400, 0o700, 0o622, 0o611):
        path.chmod(mode)
        assert readable_by_others(path) is None, oct(mode)
    path.chmod(0o640)
    assert readable_by_others(path, "passphrase file") == (
        f"passphrase file '{path}' is readable by its group (mode 0640); anyone who can read "
        f"it can decrypt with it: chmod 600 '{path}'"
    )
    assert readable_by_others(tmp_path / "missing") is None
    assert readable_by_others("/dev/null") is None  # not a regular file
