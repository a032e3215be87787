"""``kstream encrypt/decrypt`` with passphrases: prompts on a real pseudo-terminal (the
child's controlling terminal, while stdin and stdout are pipes), fd and file sources, no
terminal at all, the work-factor cap, ``inspect``, and the usage errors."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest
from clirun import KST, fails, kst
from screen import Keyboard

PHRASE = b"correct horse battery"


def encrypted_with_passphrase(
    tmp_path: Path,
    plaintext: bytes,
    *options: object,
    work_factor: int = 10,
    phrase_file: bytes = PHRASE,
) -> None:
    """``tmp_path/p`` holding ``plaintext``, encrypted into ``tmp_path/c`` with ``options``
    and the passphrase in ``tmp_path/pw`` (``phrase_file``), a file only its owner can read:
    no permission warning."""
    (tmp_path / "pw").write_bytes(phrase_file)
    (tmp_path / "pw").chmod(0o600)
    (tmp_path / "p").write_bytes(plaintext)
    kst(
        "encrypt",
        "--passphrase-file",
        tmp_path / "pw",
        "--work-factor",
        work_factor,
        *options,
        tmp_path / "p",
        tmp_path / "c",
    )


class Tty(Keyboard):
    """``kstream ARGS`` in a new session whose controlling terminal is a fresh pty; stdin
    and stdout are pipes (fed and drained by a thread), stderr is captured."""

    def __init__(self, *args: object, input: bytes = b"") -> None:
        self.master, slave = os.openpty()
        self._slave = slave
        name = os.ttyname(slave)

        def take_terminal() -> None:  # after setsid: the first tty opened becomes ours
            os.open(name, os.O_RDWR)

        self.proc = subprocess.Popen(
            [*KST, *map(str, args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=take_terminal,
        )
        self.result: tuple[bytes, bytes] = (b"", b"")
        self.screen = b""
        self._io = threading.Thread(target=self._communicate, args=(input,))
        self._io.start()

    def _communicate(self, data: bytes) -> None:
        self.result = self.proc.communicate(data, timeout=120)

    def finish(self) -> tuple[int, bytes, str]:
        self._io.join(130)
        os.close(self.master)
        os.close(self._slave)
        return self.proc.returncode, self.result[0], self.result[1].decode()


def test_encrypt_asks_twice_on_the_terminal_with_pipes_on_stdin_and_stdout(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    tty = Tty("encrypt", "-p", "--work-factor", 10, "--backend", "openssl", "-", "-", input=data)
    tty.expect(b"kstream: enter passphrase: ")
    tty.type(PHRASE + b"\n")
    tty.expect(b"kstream: confirm passphrase: ")
    tty.type(PHRASE + b"\n")
    code, out, err = tty.finish()
    assert code == 0, err
    assert PHRASE not in tty.screen  # echo was off
    assert out[10] == 1 and out[33] == 10  # the passphrase flag; log2 N
    (tmp_path / "c").write_bytes(out)
    (tmp_path / "pw").write_bytes(PHRASE + b"\n")
    (tmp_path / "pw").chmod(0o600)  # no permission warning
    back = kst("decrypt", "--passphrase-file", tmp_path / "pw", tmp_path / "c", "-").stdout
    assert back == data

    # decrypt asks once by itself (no option given), stdin and stdout pipes again
    tty = Tty("decrypt", "-", "-", input=out)
    tty.expect(b"kstream: enter passphrase: ")
    tty.type(PHRASE + b"\n")
    code, back, err = tty.finish()
    assert (code, back) == (0, data), err
    assert b"confirm" not in tty.screen and PHRASE not in tty.screen


def test_encrypt_refuses_a_mismatch_and_an_empty_passphrase(tmp_path: Path) -> None:
    (tmp_path / "p").write_bytes(b"data")
    tty = Tty("encrypt", "-p", tmp_path / "p", tmp_path / "c")
    tty.expect(b"enter passphrase: ")
    tty.type(PHRASE + b"\n")
    tty.expect(b"confirm passphrase: ")
    tty.type(PHRASE + b"!\n")
    code, _, err = tty.finish()
    assert code == 2
    assert err == "kstream: error: the passphrases do not match; nothing was encrypted\n"
    tty = Tty("encrypt", "-p", tmp_path / "p", tmp_path / "c")
    tty.expect(b"enter passphrase: ")
    tty.type(b"\n")
    code, _, err = tty.finish()
    assert (code, err) == (2, "kstream: error: the passphrase is empty; refusing to use it\n")
    assert sorted(os.listdir(tmp_path)) == ["p"]


def test_decrypt_wrong_passphrase_on_the_terminal(tmp_path: Path) -> None:
    encrypted_with_passphrase(tmp_path, os.urandom(5000), "-q")
    tty = Tty("decrypt", "-q", tmp_path / "c", tmp_path / "d")
    tty.expect(b"enter passphrase: ")
    tty.type(b"not it\n")
    code, _, err = tty.finish()
    assert code == 1
    assert err == (
        "kstream: error: authentication failed: wrong passphrase or the file was "
        "modified (segment 0)\n"
    )
    assert sorted(os.listdir(tmp_path)) == ["c", "p", "pw"]


def test_ctrl_c_at_the_prompt(tmp_path: Path) -> None:
    encrypted_with_passphrase(tmp_path, b"x")
    tty = Tty("decrypt", tmp_path / "c", tmp_path / "d")
    tty.expect(b"enter passphrase: ")
    tty.type(b"\x03")  # the terminal's INTR character: SIGINT to the foreground group
    code, _, err = tty.finish()
    assert code == 130
    assert err.endswith("kstream: error: interrupted at the passphrase prompt\n")
    assert sorted(os.listdir(tmp_path)) == ["c", "p", "pw"]


def test_no_terminal_and_no_passphrase_source_is_a_usage_error(tmp_path: Path) -> None:
    encrypted_with_passphrase(tmp_path, b"x" * 100)
    message = (
        "no terminal to ask for the passphrase on; give it with --passphrase-fd N or "
        "--passphrase-file PATH"
    )
    for args in (
        ("decrypt", tmp_path / "c", tmp_path / "d"),
        ("decrypt", "-p", "-", "-"),
        ("encrypt", "-p", tmp_path / "p", tmp_path / "e"),
    ):
        proc = subprocess.run(
            [*KST, *map(str, args)],
            input=(tmp_path / "c").read_bytes(),
            capture_output=True,
            start_new_session=True,
            timeout=60,
        )
        assert proc.returncode == 2
        assert proc.stderr.decode().splitlines()[-1] == f"kstream: error: {message}"
        assert proc.stdout == b""
    assert sorted(os.listdir(tmp_path)) == ["c", "p", "pw"]


def test_fd_and_file_sources_and_inspect(tmp_path: Path) -> None:
    data = os.urandom(2 * 1032192 + 17)
    encrypted_with_passphrase(tmp_path, data, work_factor=11, phrase_file=PHRASE + b"\nignored\n")
    r, w = os.pipe()
    os.write(w, PHRASE + b"\n")
    os.close(w)
    try:
        proc = subprocess.run(
            [
                *KST,
                "decrypt",
                "--passphrase-fd",
                str(r),
                "-j",
                "2",
                str(tmp_path / "c"),
                str(tmp_path / "d"),
            ],
            pass_fds=(r,),
            capture_output=True,
            start_new_session=True,
            timeout=120,
        )
    finally:
        os.close(r)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "d").read_bytes() == data
    text = kst("inspect", tmp_path / "c").stdout.decode()
    assert "passphrase:      scrypt, log2 N = 11 (work factor), r = 8, p = 1: 2 MiB" in text
    assert "header:          52 bytes" in text and f"plaintext:       {len(data)} bytes" in text
    salt = (tmp_path / "c").read_bytes()[36:52].hex()
    assert f"salt:            {salt}" in text


def test_work_factor_cap_on_the_command_line(tmp_path: Path) -> None:
    encrypted_with_passphrase(tmp_path, b"x" * 100, work_factor=12)
    fails(
        "decrypt",
        "--passphrase-file",
        tmp_path / "pw",
        "--max-work-factor",
        11,
        tmp_path / "c",
        tmp_path / "d",
        code=1,
        match="work factor is 12 (scrypt needs 4 MiB of memory), above the limit of 11; "
        "if you trust the file, allow it with --max-work-factor 12",
    )
    assert not (tmp_path / "d").exists()
    kst(
        "decrypt",
        "--passphrase-file",
        tmp_path / "pw",
        "--max-work-factor",
        12,
        tmp_path / "c",
        tmp_path / "d",
    )
    assert (tmp_path / "d").read_bytes() == b"x" * 100


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (
            ("decrypt", "-k", "{key}", "{c}", "{d}"),
            "this file is protected by a passphrase, not a "
            "key: give the passphrase with -p/--passphrase",
        ),
        (
            ("decrypt", "--passphrase-file", "{pw}", "{k}", "{d}"),
            "this file was encrypted with a key, not a passphrase: give the key with -k/--key-file",
        ),
        (
            ("encrypt", "-k", "{key}", "--work-factor", "12", "{p}", "{d}"),
            "--work-factor applies to a passphrase, not to a key",
        ),
        (("encrypt", "-p", "--raw", "--iv", "00" * 16, "{p}", "{d}"), "--raw takes a key"),
        (
            ("encrypt", "--passphrase-file", "{pw}", "--work-factor", "9", "{p}", "{d}"),
            "work factor must be between 10 and 30",
        ),
        (("encrypt", "-p", "-k", "{key}", "{p}", "{d}"), "not allowed with argument"),
    ],
)
def test_usage_errors_name_what_the_file_needs(
    tmp_path: Path, keyfile: Path, args: tuple[str, ...], match: str
) -> None:
    encrypted_with_passphrase(tmp_path, b"x")
    kst("encrypt", "-k", keyfile, tmp_path / "p", tmp_path / "k")
    names = {
        "key": keyfile,
        "c": tmp_path / "c",
        "d": tmp_path / "d",
        "pw": tmp_path / "pw",
        "k": tmp_path / "k",
        "p": tmp_path / "p",
    }
    fails(*[a.format(**names) for a in args], code=2, match=match, start_new_session=True)
    assert not (tmp_path / "d").exists()


def test_work_factors_beyond_memory_are_usage_errors(tmp_path: Path) -> None:
    encrypted_with_passphrase(tmp_path, b"x")
    line = fails(
        "encrypt",
        "--passphrase-file",
        tmp_path / "pw",
        "--work-factor",
        30,
        tmp_path / "p",
        tmp_path / "d",
        code=2,
        match="scrypt cannot get",
    )
    assert line == (
        "kstream: error: scrypt cannot get the 1 TiB of memory that work factor "
        "30 needs (128 * r * N bytes, r = 8); use a lower --work-factor (the "
        "default, 18, needs 256 MiB)"
    )
    blob = bytearray((tmp_path / "c").read_bytes())
    blob[33] = 30
    (tmp_path / "c").write_bytes(blob)
    line = fails(
        "decrypt",
        "--passphrase-file",
        tmp_path / "pw",
        "--max-work-factor",
        30,
        tmp_path / "c",
        tmp_path / "d",
        code=2,
        match="scrypt cannot get",
    )
    assert line.endswith("r = 8); the file can only be decrypted where that much memory is free")
    fails(
        "decrypt",
        "--passphrase-file",
        tmp_path / "pw",
        "--max-work-factor",
        128,
        tmp_path / "c",
        tmp_path / "d",
        code=2,
        match="--max-work-factor 128 is no work factor a kstream file can hold; give 1 to 127",
    )
    assert not (tmp_path / "d").exists()


def test_a_passphrase_file_readable_by_others_is_used_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "pw").write_bytes(PHRASE)
    (tmp_path / "pw").chmod(0o644)
    (tmp_path / "p").write_bytes(b"data")
    proc = kst(
        "encrypt",
        "--passphrase-file",
        tmp_path / "pw",
        "--work-factor",
        10,
        tmp_path / "p",
        tmp_path / "c",
    )
    assert (
        "kstream: warning: passphrase file" in proc.stderr.decode()
        and "chmod 600" in proc.stderr.decode()
    )
    quiet = kst("decrypt", "-q", "--passphrase-file", tmp_path / "pw", tmp_path / "c", "-")
    assert quiet.stdout == b"data" and quiet.stderr == b""


@pytest.mark.parametrize(
    ("option", "what", "given"),
    [
        ("--passphrase-fd", "passphrase", PHRASE + b"\n"),
        ("--key-fd", "key", b"00" * 32 + b"\n"),
    ],
)
@pytest.mark.parametrize("stdin_path", ["-", "/dev/stdin", "/dev/fd/0"])
def test_a_secret_descriptor_that_is_also_the_input_is_refused(
    tmp_path: Path, option: str, what: str, given: bytes, stdin_path: str
) -> None:
    """``(echo phrase; cat data) | kstream encrypt --passphrase-fd 0 - OUT`` would lose the
    input the passphrase reader took with its line (and a key reader reads it all)."""
    line = fails(
        "encrypt",
        option,
        0,
        stdin_path,
        tmp_path / "o.kst",
        code=2,
        input=given + os.urandom(100_000),
        match=f"{option} 0 is also the input",
    )
    assert line == (
        f"kstream: error: {option} 0 is also the input (stdin): reading the {what} "
        "would take input data with it; give the input as a file, or the "
        f"{what} on another descriptor (e.g. {option} 3 3<FILE)"
    )
    assert not (tmp_path / "o.kst").exists()


def test_a_secret_descriptor_duplicating_the_input_is_refused(tmp_path: Path) -> None:
    """Another number for the same pipe (``3<&0``) shares its data just the same."""
    script = f"{' '.join(KST)} encrypt -q --passphrase-fd 3 - {tmp_path / 'o.kst'} 3<&0"
    proc = subprocess.run(
        ["bash", "-c", script],
        input=PHRASE + b"\n" + b"x" * 100_000,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.decode() == (
        "kstream: error: --passphrase-fd 3 is also the input (stdin): reading the "
        "passphrase would take input data with it; give the input as a file, or the "
        "passphrase on another descriptor (e.g. --passphrase-fd 3 3<FILE)\n"
    )
    assert not (tmp_path / "o.kst").exists()


def test_one_many_files_run_shares_a_salt_and_the_readme_says_what_that_costs(
    tmp_path: Path,
) -> None:
    """One guess tested against all files of one run costs one derivation: the docs must
    not promise a separate search per file for them."""
    (tmp_path / "pw").write_bytes(PHRASE + b"\n")
    (tmp_path / "pw").chmod(0o600)
    for name in ("a", "b"):
        (tmp_path / name).write_bytes(name.encode())
    kst(
        "encrypt",
        "-q",
        "--passphrase-file",
        tmp_path / "pw",
        "--work-factor",
        10,
        "--suffix",
        ".kst",
        tmp_path / "a",
        tmp_path / "b",
    )
    salts = {(tmp_path / f"{name}.kst").read_bytes()[36:52] for name in ("a", "b")}
    assert len(salts) == 1
    doc = " ".join((Path(__file__).parents[2] / "docs" / "passphrases.md").read_text().split())
    assert "no testing one guess against many files at once" not in doc
    assert (
        "The files of one many-files run share one salt (one derivation for the run, see "
        "[format.md](format.md#passphrase-block)), so for them one guess costs one "
        "derivation and is tested against all of them"
    ) in doc
