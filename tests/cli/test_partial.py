"""``kstream decrypt --range`` and ``kstream inspect`` with a key: only the segments needed
are read, each checked, with decrypt's words for a damaged one."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from clirun import fails, kst, run_main
from sealed import PASSPHRASE, S, seal_file

import kstream
from kstream.fileobj.ends import PathInput
from kstream.format import HEADER_SIZE, OVERHEAD

SIZE = 20 * S + 9


@pytest.fixture(autouse=True)
def _openssl(monkeypatch: pytest.MonkeyPatch) -> None:
    """No notice that the kernel is unavailable: the backend is chosen."""
    monkeypatch.setenv("KSTREAM_BACKEND", "openssl")


@pytest.fixture
def sealed(tmp_path: Path) -> tuple[Path, Path, bytes]:
    """A key file, a file of 21 segments of S bytes sealed with it, and the plaintext."""
    raw = os.urandom(32)
    key = tmp_path / "k"
    key.write_text(raw.hex())
    key.chmod(0o600)
    plain = os.urandom(SIZE)
    path = tmp_path / "x.kst"
    path.write_bytes(seal_file(plain, raw))
    return key, path, plain


@pytest.mark.parametrize(
    "text",
    ["0:10", "5:5", f"{S - 3}:{3 * S + 1}", f"{SIZE - 4}:", ":7", "-10:", "-70:-3", "0:", ":",
     f"{SIZE}:", f"{SIZE + 100}:{SIZE + 200}", "30:10"],
)  # fmt: skip
def test_the_range_is_a_python_slice_of_the_plaintext(
    text: str, sealed: tuple[Path, Path, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key, path, plain = sealed
    out = tmp_path / "out"
    code, _, err = run_main(capsys, "decrypt", "-k", key, f"--range={text}", path, out)
    assert (code, err) == (0, "")
    start, _, end = text.partition(":")
    want = plain[slice(int(start) if start else None, int(end) if end else None)]
    assert out.read_bytes() == want
    assert oct(out.stat().st_mode & 0o777) == "0o600"


def test_only_the_header_the_last_segment_and_the_range_are_read(
    sealed: tuple[Path, Path, bytes],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key, path, plain = sealed
    reads: list[tuple[int, int]] = []
    real, real_parts = PathInput.pread, PathInput.pread_parts

    def pread(self: PathInput, offset: int, n: int) -> bytes:
        reads.append((offset, n))
        return real(self, offset, n)

    def pread_parts(self: PathInput, offset: int, parts: list[memoryview]) -> int:
        reads.append((offset, sum(map(len, parts))))
        return real_parts(self, offset, parts)

    monkeypatch.setattr(PathInput, "pread", pread)
    monkeypatch.setattr(PathInput, "pread_parts", pread_parts)
    out = tmp_path / "out"
    start, end = 7 * S + 5, 9 * S + 1  # segments 7, 8 and 9
    code, _, err = run_main(capsys, "decrypt", "-k", key, "--range", f"{start}:{end}", path, out)
    assert (code, err) == (0, "")
    assert out.read_bytes() == plain[start:end]
    unit = S + OVERHEAD
    last = (HEADER_SIZE + 20 * unit, 9 + OVERHEAD)
    assert reads == [
        (0, HEADER_SIZE),
        (last[0], 4),  # the last segment's frame word, then the segment
        last,
        *((HEADER_SIZE + i * unit, unit) for i in (7, 8, 9)),
    ]


def test_stdout_and_a_passphrase(tmp_path: Path) -> None:
    plain = os.urandom(5 * S)
    (tmp_path / "p.kst").write_bytes(seal_file(plain, passphrase=PASSPHRASE))
    (tmp_path / "phrase").write_bytes(PASSPHRASE + b"\n")
    (tmp_path / "phrase").chmod(0o600)
    proc = kst(
        "decrypt", "--passphrase-file", tmp_path / "phrase", "--range", "100:200",
        tmp_path / "p.kst", "-",
    )  # fmt: skip
    assert proc.stdout == plain[100:200]


def test_a_damaged_segment_fails_the_ranges_that_touch_it_and_no_others(
    sealed: tuple[Path, Path, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key, path, plain = sealed
    blob = bytearray(path.read_bytes())
    blob[HEADER_SIZE + 5 * (S + OVERHEAD) + 10] ^= 4
    path.write_bytes(bytes(blob))
    code, _, err = run_main(capsys, "decrypt", "-k", key, "-f", path, tmp_path / "whole")
    assert code == 1 and not (tmp_path / "whole").exists()
    out = tmp_path / "out"
    assert run_main(capsys, "decrypt", "-k", key, "--range", f":{5 * S}", path, out)[0] == 0
    assert out.read_bytes() == plain[: 5 * S]
    code, _, _ = run_main(capsys, "decrypt", "-k", key, "--range", f"{6 * S}:", path, out, "-f")
    assert code == 0 and out.read_bytes() == plain[6 * S :]
    code, _, err3 = run_main(
        capsys, "decrypt", "-k", key, "--range", f"{5 * S - 1}:{5 * S + 1}", path, tmp_path / "o2"
    )
    assert code == 1 and err3 == err  # decrypt's words
    assert "the file was modified at segment 5" in err
    assert not (tmp_path / "o2").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".kstream-partial")]


def test_what_range_refuses(sealed: tuple[Path, Path, bytes], tmp_path: Path) -> None:
    key, path, _ = sealed
    fails("decrypt", "-k", key, "--range", "5", path, tmp_path / "o", code=2, match="START:END")
    fails("decrypt", "-k", key, "--range", "a:b", path, tmp_path / "o", code=2, match="whole")
    fails("decrypt", "-k", key, "--range", "1:", path, code=2, match="one IN into one OUT")
    fails(
        "decrypt", "-k", key, "--range", "1:", "--suffix", ".kst", path,
        code=2, match="one IN into one OUT",
    )  # fmt: skip
    fails(
        "decrypt", "-k", key, "--range", "1:", "-", tmp_path / "o",
        code=2, match="give a file, not stdin", input=path.read_bytes(),
    )  # fmt: skip
    fails(
        "decrypt", "-k", key, "--raw", "--iv", "00" * 16, "--range", "1:", path, tmp_path / "o",
        code=2, match="raw data has no authenticated segments",
    )  # fmt: skip


def test_inspect_with_a_key_authenticates_the_size(
    sealed: tuple[Path, Path, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key, path, _ = sealed
    code, out, _ = run_main(capsys, "inspect", path)
    assert code == 0 and f"plaintext:       {SIZE} bytes (decrypting authenticates them)" in out
    code, out, _ = run_main(capsys, "inspect", "-k", key, path)
    assert code == 0
    assert f"plaintext:       {SIZE} bytes (authentic: the last segment verified with the key)" in (
        out
    )
    code, out, _ = run_main(capsys, "inspect", "--json", "-k", key, path)
    info = json.loads(out)
    assert (info["plaintext_size"], info["size_verified"]) == (SIZE, True)
    other = tmp_path / "other"
    other.write_text(kstream.Key.generate().hex_text().decode())
    other.chmod(0o600)
    code, out, err = run_main(capsys, "inspect", "-k", other, path)
    assert code == 1 and "NOT verified" in out
    assert err == (
        "kstream: error: authentication failed: wrong key or the file was modified (segment 20)\n"
    )
    (tmp_path / "phrase").write_bytes(PASSPHRASE)
    (tmp_path / "phrase").chmod(0o600)
    (tmp_path / "p.kst").write_bytes(seal_file(b"abc", passphrase=PASSPHRASE))
    code, out, _ = run_main(
        capsys, "inspect", "--passphrase-file", tmp_path / "phrase", tmp_path / "p.kst"
    )
    assert code == 0 and "3 bytes (authentic" in out
