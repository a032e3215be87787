"""``kstream inspect`` (kstream.cli.inspect): the header, and a body whose frame words are
followed without a key, for regular files and for stdin. A damaged layout is named in the
words decryption uses for it, with exit status 1; an intact one gives the plaintext size."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from clirun import KST, fails, kst, one_error, run_main

from kstream.format import DEFAULT_SEGMENT, HEADER_SIZE, OVERHEAD, framed_size

S = DEFAULT_SEGMENT
UNIT = S + OVERHEAD
#: Plaintext sizes: empty (one empty last segment), small, exact multiples of the segment
#: (a full segment, then an empty last one), and a partial third segment.
SIZES = (0, 1000, S, 2 * S, 2 * S + 17)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[int, Path]]]:
    """A key and one kstream file per size in SIZES (made once: encryption is the slow part)."""
    tmp = tmp_path_factory.mktemp("inspect")
    key = tmp / "k"
    kst("keygen", key)
    files = {}
    for size in SIZES:
        (tmp / f"p{size}").write_bytes(os.urandom(size))
        kst("encrypt", "-q", "-k", key, tmp / f"p{size}", tmp / f"c{size}")
        files[size] = tmp / f"c{size}"
    yield key, files


def inspect_json(
    capsys: pytest.CaptureFixture[str], path: Path
) -> tuple[int, dict[str, object], str]:
    code, out, err = run_main(capsys, "inspect", "--json", path)
    return code, json.loads(out), err


def decrypt_error(capsys: pytest.CaptureFixture[str], key: Path, path: Path) -> str:
    """The one error line of decrypting ``path`` (which must fail with exit status 1)."""
    code, _, err = run_main(capsys, "decrypt", "-q", "-k", key, path, path.with_suffix(".out"))
    assert code == 1, err
    return one_error(err, "")


@pytest.mark.parametrize("size", SIZES)
def test_intact_files_of_every_shape(
    capsys: pytest.CaptureFixture[str], made: tuple[Path, dict[int, Path]], size: int
) -> None:
    path = made[1][size]
    code, info, err = inspect_json(capsys, path)
    assert (code, err) == (0, "")
    assert info["body_size"] == framed_size(size, S) == path.stat().st_size - HEADER_SIZE
    assert info["plaintext_size"] == size
    assert info["segments"] == size // S + 1
    assert info["damage"] is None
    code, text, err = run_main(capsys, "inspect", path)
    assert (code, err) == (0, "")
    count = size // S + 1
    assert (
        f"body:            {framed_size(size, S)} bytes in {count} "
        f"segment{'s' if count > 1 else ''}, framed as intact\n"
    ) in text
    assert f"plaintext:       {size} bytes (decrypting authenticates them)\n" in text


def _damaged(
    src: Path, dst: Path, *, keep: int | None = None, append: bytes = b"", flip: int | None = None
) -> Path:
    blob = bytearray(src.read_bytes())
    if keep is not None:
        del blob[keep:]
    if flip is not None:
        blob[flip] ^= 0x80
    dst.write_bytes(bytes(blob) + append)
    return dst


#: (plaintext size, how many bytes of the file to keep): truncations of every kind.
CUTS = [
    (1000, HEADER_SIZE),  # the header alone
    (1000, HEADER_SIZE + 2),  # half a frame word
    (1000, HEADER_SIZE + OVERHEAD + 999),  # the last segment's tag cut short by a byte
    (S, HEADER_SIZE + UNIT),  # a full segment, the empty last one missing
    (2 * S, HEADER_SIZE + 2 * UNIT + 3),  # two segments and 3 bytes of the last frame
    (2 * S + 17, HEADER_SIZE + UNIT + 5000),  # the second segment cut in the middle
    (2 * S + 17, HEADER_SIZE + 2 * UNIT - 1),  # the second segment's tag cut short
]


@pytest.mark.parametrize(("size", "keep"), CUTS)
def test_truncated_files_are_named_as_decrypt_names_them(
    capsys: pytest.CaptureFixture[str],
    made: tuple[Path, dict[int, Path]],
    tmp_path: Path,
    size: int,
    keep: int,
) -> None:
    key, files = made
    path = _damaged(files[size], tmp_path / "t.kst", keep=keep)
    expected = decrypt_error(capsys, key, path)
    assert expected.startswith("kstream: error: file is truncated")
    code, info, err = inspect_json(capsys, path)
    assert code == 1 and one_error(err, "") == expected
    assert info["damage"] == expected.removeprefix("kstream: error: ")
    assert info["plaintext_size"] is None and info["segments"] is None
    assert info["body_size"] == keep - HEADER_SIZE
    code, text, err = run_main(capsys, "inspect", path)
    assert code == 1 and one_error(err, "") == expected
    assert text.endswith(
        f"body:            {keep - HEADER_SIZE} bytes, damaged (see the "
        "error)\nplaintext:       unknown\n"
    )


def test_the_issue_example_a_size_that_fits_a_plaintext_is_not_believed(
    capsys: pytest.CaptureFixture[str], made: tuple[Path, dict[int, Path]], tmp_path: Path
) -> None:
    """Cut so that the body's size fits some plaintext size (the old inspect showed it)."""
    key, files = made
    keep = HEADER_SIZE + UNIT + 40  # a body of one full unit and 40 bytes: "20 bytes" fits
    path = _damaged(files[2 * S + 17], tmp_path / "t.kst", keep=keep)
    code, info, _ = inspect_json(capsys, path)
    assert code == 1
    assert info["damage"] == "file is truncated: segment 1 is incomplete"
    assert one_error(decrypt_error(capsys, key, path), "segment 1 is incomplete")


@pytest.mark.parametrize(
    ("size", "extra"), [(0, 1), (1000, 5), (S, 5), (2 * S + 17, 5), (1000, UNIT + 100)]
)
def test_appended_data_is_counted(
    capsys: pytest.CaptureFixture[str],
    made: tuple[Path, dict[int, Path]],
    tmp_path: Path,
    size: int,
    extra: int,
) -> None:
    """Decrypt reads at most a unit past the end, so it says "N or more"; inspect knows the
    file's size and gives the exact count, in the same words."""
    key, files = made
    path = _damaged(files[size], tmp_path / "a.kst", append=os.urandom(extra))
    prefix = "kstream: error: trailing data after the end of the encrypted file: "
    assert decrypt_error(capsys, key, path).startswith(prefix)
    code, info, err = inspect_json(capsys, path)
    assert code == 1
    counted = f"{extra} byte{'s' if extra > 1 else ''} {'were' if extra > 1 else 'was'} appended"
    assert one_error(err, "") == prefix + counted
    assert info["damage"] == prefix.removeprefix("kstream: error: ") + counted


@pytest.mark.parametrize(
    ("flip", "word"),
    [
        (
            HEADER_SIZE + UNIT,
            0x80000000 | S,
        ),  # a full segment flagged last: a writer's last is short
        (HEADER_SIZE + UNIT + 3, S ^ 0x80),  # a short segment not flagged last
        (HEADER_SIZE + 2 * UNIT + 1, 0x80000000 | 0x800000 | 17),  # a last one longer than S
    ],
)
def test_a_damaged_length_word(
    capsys: pytest.CaptureFixture[str],
    made: tuple[Path, dict[int, Path]],
    tmp_path: Path,
    flip: int,
    word: int,
) -> None:
    """Decryption calls these an authentication failure (it checks the tag with the key);
    inspect, which has no key, names the word."""
    key, files = made
    path = _damaged(files[2 * S + 17], tmp_path / "d.kst", flip=flip)
    assert "authentication failed" in decrypt_error(capsys, key, path)
    code, info, err = inspect_json(capsys, path)
    assert code == 1
    segment = (flip - HEADER_SIZE) // UNIT
    assert info["damage"] == one_error(err, "").removeprefix("kstream: error: ")
    one_error(
        err,
        f"file is damaged: segment {segment} starts with length word 0x{word:08x}, "
        f"which no kstream writer produces (segments of {S} bytes); the file was "
        "modified",
    )


def test_a_passphrase_file_header(tmp_path: Path) -> None:
    """The walk starts after the 52-byte header; cut or intact, through a subprocess."""
    (tmp_path / "pw").write_bytes(b"correct horse battery staple\n")
    (tmp_path / "pw").chmod(0o600)
    (tmp_path / "p").write_bytes(os.urandom(S + 3))
    kst(
        "encrypt",
        "--passphrase-file",
        tmp_path / "pw",
        "--work-factor",
        10,
        tmp_path / "p",
        tmp_path / "c",
    )
    info = json.loads(kst("inspect", "--json", tmp_path / "c").stdout)
    assert (info["header_size"], info["plaintext_size"], info["segments"]) == (52, S + 3, 2)
    assert info["kdf"]["log2_n"] == 10
    _damaged(tmp_path / "c", tmp_path / "t", keep=52 + UNIT + 10)
    line = fails(
        "inspect", tmp_path / "t", code=1, match="file is truncated: segment 1 is incomplete"
    )
    proc = kst(
        "decrypt", "--passphrase-file", tmp_path / "pw", tmp_path / "t", tmp_path / "d", check=False
    )
    assert proc.returncode == 1 and proc.stderr.decode().splitlines()[-1] == line


@pytest.mark.parametrize("size", [0, S, 2 * S + 17])
def test_stdin_is_read_through(
    made: tuple[Path, dict[int, Path]], tmp_path: Path, size: int
) -> None:
    """A pipe (subprocess input) and a redirected regular file give what the path gives,
    intact or not."""
    path = made[1][size]
    by_path = kst("inspect", "--json", path).stdout
    assert kst("inspect", "--json", "-", input=path.read_bytes()).stdout == by_path
    with open(path, "rb") as f:
        assert (
            subprocess.run(
                [*KST, "inspect", "--json", "-"], stdin=f, capture_output=True, check=True
            ).stdout
            == by_path
        )
    for name, damaged in (("cut", path.read_bytes()[:-1]), ("long", path.read_bytes() + b"xy")):
        (tmp_path / name).write_bytes(damaged)
        by_path_proc = kst("inspect", "--json", tmp_path / name, check=False)
        piped = kst("inspect", "--json", "-", input=damaged, check=False)
        assert by_path_proc.returncode == piped.returncode == 1
        assert piped.stdout == by_path_proc.stdout and piped.stderr == by_path_proc.stderr
        assert json.loads(piped.stdout)["damage"] is not None


def test_not_kstream_files(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    fails("inspect", tmp_path / "empty", code=1, match="input is empty: not a kstream file")
    fails("inspect", "-", code=1, match="input is empty: not a kstream file", input=b"")
    (tmp_path / "gif").write_bytes(b"GIF89a" + bytes(100))
    fails("inspect", tmp_path / "gif", code=1, match="not a kstream file (bad magic)")
    fails("inspect", tmp_path / "missing", code=4, match="cannot open input")
