"""kstream.keys.passphrase: scrypt against RFC 7914 and hashlib, the published passphrase vectors
against tests/reference.py, the work-factor cap, passphrase sources, and both backends."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path

import pytest
from reference import check_blob, passphrase_key, seal_with_passphrase
from streams import Collect, decrypt_to, encrypt_to, one

import kstream
from kstream.api import BackendName
from kstream.engine.iterate import IterSource
from kstream.errors import FormatError, IntegrityError, UsageError, command_line_words
from kstream.format import DEFAULT_SEGMENT as S
from kstream.format import CipherSuite, Header, KdfParams
from kstream.keys.passphrase import (
    check_work_factor,
    derive,
    new_params,
    passphrase_bytes,
    read_passphrase_fd,
    read_passphrase_file,
)

VECTORS = json.loads(
    (Path(__file__).parents[1] / "vectors" / "kstream-v1-passphrase.json").read_text()
)
SALT = bytes(range(0x40, 0x50))


def test_hashlib_scrypt_is_rfc_7914() -> None:
    """The reference's scrypt (hashlib) against RFC 7914 section 12, the third vector."""
    out = hashlib.scrypt(b"pleaseletmein", salt=b"SodiumChloride", n=16384, r=8, p=1, dklen=64)
    assert out.hex() == (
        "7023bdcb3afd7348461c06cd81fd38ebfda8fbba904f8e3ea9b543f6545da1f2"
        "d5432955613f0fcf62d49705242a9af9e61e85dc0d651e40dfcf017b45575887"
    )


@pytest.mark.parametrize("log2n", [10, 14])
def test_derive_matches_hashlib(log2n: int) -> None:
    params = KdfParams(log2n=log2n, salt=SALT)
    key = derive(bytearray(b"pleaseletmein"), params)
    assert key.bits == 256
    assert key.material() == hashlib.scrypt(
        b"pleaseletmein", salt=SALT, n=1 << log2n, r=8, p=1, dklen=32
    )


def test_new_params_are_fresh_and_bounded() -> None:
    a, b = new_params(), new_params(12)
    assert (a.log2n, a.r, a.p, b.log2n) == (18, 8, 1, 12)
    assert a.salt != b.salt and len(a.salt) == 16
    for bad in (9, 31):
        with pytest.raises(UsageError, match="work factor must be between 10 and 30"):
            new_params(bad)


def test_work_factor_cap_names_the_factor_and_the_option() -> None:
    check_work_factor(KdfParams(log2n=20, salt=SALT))
    with pytest.raises(FormatError) as info:
        check_work_factor(KdfParams(log2n=21, salt=SALT))
    assert str(info.value) == (
        "the file's passphrase work factor is 21 (scrypt needs 2 GiB of memory), above the "
        "limit of 20; if you trust the file, allow it with max_work_factor=21"
    )
    with command_line_words():
        assert str(info.value).endswith("allow it with --max-work-factor 21")
    check_work_factor(KdfParams(log2n=21, salt=SALT), 21)


def test_passphrase_bytes() -> None:
    assert passphrase_bytes("pässwörd") == bytearray("pässwörd".encode())
    assert passphrase_bytes(b"x") == bytearray(b"x")
    assert passphrase_bytes(lambda: "asked") == bytearray(b"asked")
    for empty in ("", b"", lambda: b""):
        with pytest.raises(UsageError, match="passphrase is empty"):
            passphrase_bytes(empty)


def test_passphrase_file_and_fd_give_the_first_line(tmp_path: Path) -> None:
    for content, want in [
        (b"secret\nsecond line\n", b"secret"),
        (b"secret", b"secret"),
        (b"se cret \r\n", b"se cret "),
        (b"\xc3\xa4\n", b"\xc3\xa4"),
    ]:
        (tmp_path / "pw").write_bytes(content)
        assert read_passphrase_file(tmp_path / "pw") == want
        r, w = os.pipe()
        os.write(w, content)
        os.close(w)
        assert read_passphrase_fd(r) == want
        os.close(r)
    (tmp_path / "pw").write_bytes(b"\nsecret\n")
    with pytest.raises(UsageError, match="gives an empty passphrase"):
        read_passphrase_file(tmp_path / "pw")
    with pytest.raises(UsageError, match="cannot read passphrase file"):
        read_passphrase_file(tmp_path / "missing")
    with pytest.raises(UsageError, match="cannot read passphrase fd 999"):
        read_passphrase_fd(999)


# --- the published vectors --------------------------------------------------------------------


def pattern(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


def vector_data(vector: dict[str, object]) -> tuple[bytes, Header, bytes]:
    plain = (
        bytes.fromhex(str(vector["plaintext"]))
        if "plaintext" in vector
        else pattern(int(str(vector["plaintext_size"])))
    )
    kdf = KdfParams(
        log2n=int(str(vector["log2_n"])),
        salt=bytes.fromhex(str(vector["salt"])),
        r=int(str(vector["r"])),
        p=int(str(vector["p"])),
    )
    header = Header(suite=CipherSuite.AES_256_CTR, iv=bytes.fromhex(str(vector["iv"])), kdf=kdf)
    return bytes.fromhex(str(vector["passphrase_utf8"])), header, plain


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_published_passphrase_vectors(vector: dict[str, object]) -> None:
    phrase, header, plain = vector_data(vector)
    assert str(vector["passphrase"]).encode() == phrase
    # The vectors came from tests/reference.py; they must still agree with it...
    assert passphrase_key(phrase, header.encode()).hex() == vector["key"]
    check_blob(vector, seal_with_passphrase(phrase, header.encode(), plain, S), 84)
    # ... and kstream, given the same salt and IV, writes the same bytes (str or bytes).
    sink = Collect()
    asyncio.run(
        encrypt_to(
            IterSource(one(plain)),
            sink,
            passphrase=str(vector["passphrase"]),
            header=header,
            backend="openssl",
        )
    )
    check_blob(vector, bytes(sink.data), 84)
    out = Collect()
    asyncio.run(
        decrypt_to(IterSource(one(bytes(sink.data))), out, passphrase=phrase, backend="openssl")
    )
    assert bytes(out.data) == plain


def test_readme_passphrase_example() -> None:
    vector = VECTORS["vectors"][0]
    assert vector["file"] == (
        "4b53545245414d1a0103010100"
        "0fc000f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"
        "010a0801"
        "404142434445464748494a4b4c4d4e4f"
        "80000010"
        "cd058b67149e1b75b9ac6144624bf749"
        "c984b329bde088a0ba7f8707294e9301"
    )


def test_scrypt_memory_is_released_before_streaming() -> None:
    """log2 N = 17 makes scrypt allocate 128 MiB; when derive returns it is gone again, so
    the streaming memory bound holds from then on (docs/passphrases.md)."""

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    before = rss()
    derive(bytearray(b"x"), KdfParams(log2n=17, salt=SALT)).wipe()
    assert rss() - before < 32 << 20


# --- both backends --------------------------------------------------------------------------


@pytest.mark.kernel
@pytest.mark.parametrize(
    ("enc", "dec"), [("kernel", "openssl"), ("openssl", "kernel"), ("kernel", "kernel")]
)
async def test_passphrase_file_on_both_backends(
    tmp_path: Path, enc: BackendName, dec: BackendName
) -> None:
    """The derived key reaches the kernel by ALG_SET_KEY like a key file's; the file is the
    reference's, whichever backend wrote it, through ranges and through the stream."""
    plain = os.urandom(2 * S + 333)
    (tmp_path / "p").write_bytes(plain)
    await kstream.encrypt_file(
        tmp_path / "p", tmp_path / "c", passphrase="k", work_factor=10, backend=enc
    )
    blob = (tmp_path / "c").read_bytes()
    header = Header.parse(blob)
    assert header.kdf is not None and header.kdf.log2n == 10
    assert blob == seal_with_passphrase(b"k", blob[:52], plain, S)
    await kstream.decrypt_file(tmp_path / "c", tmp_path / "d", passphrase=b"k", backend=dec)
    assert (tmp_path / "d").read_bytes() == plain
    got = b"".join(
        [p async for p in kstream.decrypt_stream(one(blob), passphrase="k", backend=dec)]
    )
    assert got == plain
    with pytest.raises(
        IntegrityError,
        match="wrong passphrase or the file was modified "
        r"\(segment 0\)",
    ):
        await kstream.decrypt_file(tmp_path / "c", tmp_path / "e", passphrase="K", backend=dec)
    assert not (tmp_path / "e").exists()
