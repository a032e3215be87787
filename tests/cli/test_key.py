"""``kstream keygen`` and ``kstream key ...`` (kstream.cli.key): key files, the keyring
options of encrypt/decrypt, and keyring errors as one line. The keyring tests that need a
real kernel keyring stay in tests/test_keyring.py, beside their fixtures."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
from clirun import fails, keybytes, kst, one_error, run_main

from kstream import keyring
from kstream.cli.main import main
from kstream.errors import UsageError


@pytest.mark.parametrize("bits", [128, 192, 256])
def test_keygen(tmp_path: Path, bits: int) -> None:
    path = tmp_path / "k"
    kst("keygen", "--bits", bits, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(keybytes(path)) == bits // 8
    before = path.read_bytes()
    fails("keygen", path, code=2, match="already exists; refusing to overwrite")
    assert path.read_bytes() == before
    piped = kst("keygen", "--bits", bits, "-").stdout
    assert len(bytes.fromhex(piped.decode())) == bits // 8


def test_cli_key_options_are_exclusive_and_checked(capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["encrypt", "--key-name", "x", "-k", "kf", "a", "b"])
    assert info.value.code == 2
    one_error(capsys.readouterr().err, "argument -k/--key-file: not allowed with argument "
              "--key-name")
    with pytest.raises(SystemExit):
        main(["decrypt", "--key-serial", "twelve", "a", "b"])
    one_error(capsys.readouterr().err, "'twelve' is not a key serial number")
    with pytest.raises(SystemExit):
        main(["key"])
    one_error(capsys.readouterr().err, "required: ACTION")
    for action in ("add", "gen"):
        code, _, err = run_main(capsys, "key", action, "x", "--keyring", "process")
        assert code == 2
        one_error(err, "--keyring process would put the key in this command's own keyring")
    (tmp_path / "p").write_bytes(b"x")
    code, _, err = run_main(capsys, "encrypt", "--key-name", "bad name", tmp_path / "p",
                            tmp_path / "c")
    assert code == 2
    one_error(err, "invalid key name 'bad name'")
    code, _, err = run_main(capsys, "encrypt", tmp_path / "p", tmp_path / "c")
    one_error(err, "no key given: use -k/--key-file PATH, --key-fd N, --key-name NAME, "
              "--key-serial N or -p/--passphrase")


def test_cli_key_add_refuses_a_terminal(monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(os, "isatty", lambda fd: True)
    code, out, err = run_main(capsys, "key", "add", "x")
    assert code == 2 and out == ""
    one_error(err, "refusing to read a key from the terminal")


def test_cli_maps_keyring_errors_to_one_line(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    def search(ring: str, key_type: str, description: str) -> int:
        raise OSError(errno.EKEYREVOKED, "revoked")

    monkeypatch.setattr(keyring, "search", search)
    (tmp_path / "p").write_bytes(b"x")
    code, _, err = run_main(capsys, "encrypt", "--key-name", "gone", tmp_path / "p",
                            tmp_path / "c")
    assert code == 2
    one_error(err, "key 'kstream:gone' has been revoked")
    assert not (tmp_path / "c").exists()


def test_key_gen_removes_its_backup_when_the_keyring_refuses(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    monkeypatch.setattr(keyring, "ensure_absent", lambda description, ring: None)

    def refuse(key_type: str, description: str, payload: bytes, ring: str) -> int:
        raise UsageError("the keyring refused the key (simulated)")

    monkeypatch.setattr(keyring, "add_key", refuse)
    code, out, err = run_main(capsys, "key", "gen", "x", "--save", tmp_path / "backup.key")
    assert code == 2 and out == ""
    one_error(err, "the keyring refused the key (simulated)")
    assert not (tmp_path / "backup.key").exists()


def test_defaults_are_256_bits_and_128_bits_into_the_keyring_warns(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    """keygen, key gen and Key.generate default to AES-256; a 128-bit key added to or
    generated in the keyring warns (even with -q) and names the reason."""
    from kstream.cli.key import SHORT_KEY_WARNING
    from kstream.keys import Key
    assert Key.generate().bits == 256
    assert run_main(capsys, "keygen", tmp_path / "k")[0] == 0
    assert len(keybytes(tmp_path / "k")) == 32
    added: list[int] = []
    monkeypatch.setattr(keyring, "ensure_absent", lambda description, ring: 7)

    def add(key_type: str, description: str, payload: bytearray, ring: str) -> int:
        added.append(len(payload))
        return 1000 + len(added)

    monkeypatch.setattr(keyring, "add_key", add)
    code, out, err = run_main(capsys, "key", "gen", "x", "-q")
    assert (code, out, err, added) == (0, "1001\n", "", [32])
    warning = f"kstream: warning: {SHORT_KEY_WARNING}\n"
    assert "ghash" in SHORT_KEY_WARNING and "polyval" in SHORT_KEY_WARNING
    assert run_main(capsys, "key", "gen", "x", "--bits", 128, "-q") == (0, "1002\n", warning)
    kst("keygen", "--bits", 128, tmp_path / "k128")
    assert run_main(capsys, "key", "add", "y", tmp_path / "k128", "-q") == (0, "1003\n", warning)
    code, _, err = run_main(capsys, "key", "add", "z", tmp_path / "k")
    assert code == 0 and "warning" not in err
    assert added == [32, 16, 16, 32]


def test_key_add_warns_about_a_key_file_others_can_read(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    monkeypatch.setattr(keyring, "ensure_absent", lambda description, ring: 7)
    monkeypatch.setattr(keyring, "add_key", lambda *args: 4242)
    run_main(capsys, "keygen", tmp_path / "k")
    (tmp_path / "k").chmod(0o640)
    code, out, err = run_main(capsys, "key", "add", "x", tmp_path / "k")
    assert (code, out) == (0, "4242\n")
    assert err.startswith("kstream: warning: key file") and "chmod 600" in err
    assert run_main(capsys, "key", "add", "x", tmp_path / "k", "-q") == (0, "4242\n", "")
