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
from screen import Keyboard

from kstream.cli import key as cli_key
from kstream.cli.main import main
from kstream.errors import UsageError
from kstream.keys import keyring


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


def test_cli_key_options_are_exclusive_and_checked(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["encrypt", "--key-name", "x", "-k", "kf", "a", "b"])
    assert info.value.code == 2
    one_error(
        capsys.readouterr().err, "argument -k/--key-file: not allowed with argument --key-name"
    )
    with pytest.raises(SystemExit):
        main(["decrypt", "--key-serial", "twelve", "a", "b"])
    one_error(capsys.readouterr().err, "'twelve' is not a key serial number")
    with pytest.raises(SystemExit):
        main(["key"])
    one_error(capsys.readouterr().err, "required: ACTION")
    for action in ("add", "gen", "load"):  # not offered, but explained when asked for
        with pytest.raises(SystemExit) as info:
            main(["key", action, "x", "--keyring", "process"])
        assert info.value.code == 2
        one_error(
            capsys.readouterr().err,
            "argument --keyring: 'process' would put the key in "
            "this command's own keyring, which vanishes when it exits; use user or session",
        )
        with pytest.raises(SystemExit):
            main(["key", action, "--help"])
        usage = capsys.readouterr().out
        assert "--keyring {user,session}" in usage and "process'" not in usage
        assert "process:" not in usage and "'process" not in usage
    (tmp_path / "p").write_bytes(b"x")
    code, _, err = run_main(
        capsys, "encrypt", "--key-name", "bad name", tmp_path / "p", tmp_path / "c"
    )
    assert code == 2
    one_error(err, "invalid key name 'bad name'")
    code, _, err = run_main(capsys, "encrypt", tmp_path / "p", tmp_path / "c")
    one_error(
        err,
        "no key given: use -k/--key-file PATH, --key-fd N, --key-name NAME, "
        "--key-serial N or -p/--passphrase",
    )


def test_cli_key_add_refuses_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "isatty", lambda fd: True)
    code, out, err = run_main(capsys, "key", "add", "x")
    assert code == 2 and out == ""
    one_error(err, "refusing to read a key from the terminal")


def test_cli_maps_keyring_errors_to_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def search(ring: str, key_type: str, description: str) -> int:
        raise OSError(errno.EKEYREVOKED, "revoked")

    monkeypatch.setattr(keyring, "search", search)
    (tmp_path / "p").write_bytes(b"x")
    code, _, err = run_main(capsys, "encrypt", "--key-name", "gone", tmp_path / "p", tmp_path / "c")
    assert code == 2
    one_error(err, "key 'kstream:gone' has been revoked")
    assert not (tmp_path / "c").exists()


def test_key_gen_removes_its_backup_when_the_keyring_refuses(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(keyring, "ensure_absent", lambda description, ring: None)

    def refuse(key_type: str, description: str, payload: bytes, ring: str) -> int:
        raise UsageError("the keyring refused the key (simulated)")

    monkeypatch.setattr(keyring, "add_key", refuse)
    code, out, err = run_main(capsys, "key", "gen", "x", "--save", tmp_path / "backup.key")
    assert code == 2 and out == ""
    one_error(err, "the keyring refused the key (simulated)")
    assert not (tmp_path / "backup.key").exists()


def test_defaults_are_256_bits_and_128_bits_into_the_keyring_warns(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """keygen, key gen and Key.generate default to AES-256; a 128-bit key added to or
    generated in the keyring warns (even with -q) and names the reason."""
    from kstream.cli.key import SHORT_KEY_WARNING
    from kstream.keys.key import Key

    assert Key.generate().bits == 256
    assert run_main(capsys, "keygen", tmp_path / "k")[0] == 0
    assert len(keybytes(tmp_path / "k")) == 32
    added: list[int] = []
    monkeypatch.setattr(cli_key, "unusable_here", lambda key_type: None)
    monkeypatch.setattr(keyring, "ensure_absent", lambda description, ring: 7)

    def add(key_type: str, description: str, payload: bytearray, ring: str) -> int:
        added.append(len(payload))
        return 1000 + len(added)

    monkeypatch.setattr(keyring, "add_key", add)
    code, out, err = run_main(capsys, "key", "gen", "x", "-q", "--save", tmp_path / "x.key")
    assert (code, out, err, added) == (0, "1001\n", "", [32])
    warning = f"kstream: warning: {SHORT_KEY_WARNING}\n"
    assert "ghash" in SHORT_KEY_WARNING and "polyval" in SHORT_KEY_WARNING
    assert run_main(
        capsys, "key", "gen", "x", "--bits", 128, "-q", "--save", tmp_path / "x128.key"
    ) == (0, "1002\n", warning)
    kst("keygen", "--bits", 128, tmp_path / "k128")
    assert run_main(capsys, "key", "add", "y", tmp_path / "k128", "-q") == (0, "1003\n", warning)
    code, _, err = run_main(capsys, "key", "add", "z", tmp_path / "k")
    assert code == 0 and "warning" not in err
    assert added == [32, 16, 16, 32]


def test_key_add_warns_about_a_key_file_others_can_read(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(keyring, "ensure_absent", lambda description, ring: 7)
    monkeypatch.setattr(keyring, "add_key", lambda *args: 4242)
    monkeypatch.setattr(cli_key, "unusable_here", lambda key_type: None)
    run_main(capsys, "keygen", tmp_path / "k")
    (tmp_path / "k").chmod(0o640)
    code, out, err = run_main(capsys, "key", "add", "x", tmp_path / "k")
    assert (code, out) == (0, "4242\n")
    assert err.startswith("kstream: warning: key file") and "chmod 600" in err
    assert run_main(capsys, "key", "add", "x", tmp_path / "k", "-q") == (0, "4242\n", "")


# --------------------------------------------------------------------- keys this host cannot use


def _fake_keyring(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """A keyring that takes every key (no system call); what was added, in order."""
    added: list[tuple[str, str, str]] = []
    monkeypatch.setattr(keyring, "ensure_absent", lambda description, ring: 7)

    def add(key_type: str, description: str, payload: bytearray, ring: str) -> int:
        added.append((key_type, description, ring))
        return 5000 + len(added)

    monkeypatch.setattr(keyring, "add_key", add)
    return added


def _kernel(
    monkeypatch: pytest.MonkeyPatch, available: bool, serial: dict[str, object] | None = None
) -> None:
    """The kernel backend's probe and the key-by-serial check, simulated."""
    from kstream.backends.base import Availability
    from kstream.backends.kernel import diagnosis
    from kstream.backends.kernel.backend import KernelBackend

    reason = "simulated kernel" if available else "simulated: no AF_ALG sockets"
    monkeypatch.setattr(
        KernelBackend, "probe", lambda self: Availability("kernel", available, reason)
    )
    monkeypatch.setattr(
        diagnosis,
        "key_by_serial_support",
        lambda: serial or {"supported": True, "how": "probe", "detail": "serial 0 gave ENOKEY"},
    )


def test_creating_a_key_this_host_cannot_use_warns_even_with_q(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    added = _fake_keyring(monkeypatch)
    _kernel(monkeypatch, available=False)
    run_main(capsys, "keygen", tmp_path / "k")
    code, out, err = run_main(capsys, "key", "add", "a", tmp_path / "k", "-q")
    assert (code, out) == (0, "5001\n")
    assert err == (
        "kstream: warning: logon key 'kstream:a': it cannot be used on this host: "
        "the kernel backend is unavailable: simulated: no AF_ALG sockets; see "
        "'kstream backends'\n"
    )
    code, out, err = run_main(
        capsys, "key", "gen", "b", "--type", "user", "-q", "--save", tmp_path / "b.key"
    )
    assert (code, out) == (0, "5002\n")
    assert err == (
        "kstream: warning: user key 'kstream:b': on this host it can only be used "
        "with --backend openssl, which reads it into process memory: the kernel "
        "backend is unavailable: simulated: no AF_ALG sockets; see 'kstream "
        "backends'\n"
    )
    # A kernel with AF_ALG that cannot take keys by serial (before 6.2) is the same story.
    _kernel(
        monkeypatch,
        available=True,
        serial={"supported": False, "how": "probe", "detail": "serial 0 gave ENOPROTOOPT"},
    )
    code, _, err = run_main(capsys, "key", "add", "c", tmp_path / "k", "-q")
    assert code == 0
    assert err == (
        "kstream: warning: logon key 'kstream:c': it cannot be used on this host: "
        "this kernel cannot take keys by serial (serial 0 gave ENOPROTOOPT; needs "
        "Linux ≥ 6.2); see 'kstream backends'\n"
    )
    _kernel(monkeypatch, available=True)
    assert run_main(capsys, "key", "add", "d", tmp_path / "k", "-q") == (0, "5004\n", "")
    assert [name for _, name, _ in added] == ["kstream:a", "kstream:b", "kstream:c", "kstream:d"]
    # A durable (encrypted) key is used by serial too.
    from kstream.keys import encrypted

    monkeypatch.setattr(encrypted, "generate", lambda name, master, blob, ring: 6000)
    _kernel(monkeypatch, available=False)
    code, out, err = run_main(
        capsys, "key", "gen", "e", "--durable", "--master", "m", "-q", "--blob", tmp_path / "e.blob"
    )
    assert (code, out) == (0, "6000\n")
    assert err == (
        "kstream: warning: encrypted key 'kstream:e': it cannot be used on this "
        "host: the kernel backend is unavailable: simulated: no AF_ALG sockets; see "
        "'kstream backends'\n"
    )


def test_this_host_without_af_alg_for_real() -> None:
    """No simulation: on this host (no AF_ALG) the reason is the kernel backend's own."""
    from kstream.backends.kernel.backend import KernelBackend

    status = KernelBackend().probe()
    if status.available:
        pytest.skip("the kernel backend works here")
    assert cli_key.unusable_here("logon") == (
        f"it cannot be used on this host: the kernel backend is unavailable: {status.reason}; "
        "see 'kstream backends'"
    )


@pytest.mark.parametrize(("ring", "when"), [("user", "reboot"), ("session", "logout")])
def test_a_key_without_backup_warns_even_with_q(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    ring: str,
    when: str,
) -> None:
    """``key gen`` without --save: the keyring holds the only copy, and -q must not hide
    that; it is lost at reboot (user keyring) or at logout (session keyring)."""
    _fake_keyring(monkeypatch)
    _kernel(monkeypatch, available=True)
    code, out, err = run_main(capsys, "key", "gen", "a", "--keyring", ring, "-q")
    assert (code, out) == (0, "5001\n")
    assert err == (
        "kstream: warning: logon key 'kstream:a': no copy exists anywhere else, so "
        f"it is lost at {when}; use --save KEYFILE to keep a backup\n"
    )
    code, _, err = run_main(capsys, "key", "gen", "b", "--keyring", ring)
    assert err.splitlines() == [
        f"kstream: notice: added logon key 'kstream:b' (AES-256) to the {ring} keyring",
        "kstream: warning: logon key 'kstream:b': no copy exists anywhere else, so it is lost "
        f"at {when}; use --save KEYFILE to keep a backup",
    ]
    assert run_main(
        capsys, "key", "gen", "c", "--keyring", ring, "-q", "--save", tmp_path / "c.key"
    ) == (0, "5003\n", "")


# --------------------------------------------------------------------------- key rm


def _fake_keys(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Keys kstream:NAME of type NAME (logon, user, encrypted); the serials invalidated."""
    removed: list[int] = []
    serials = {"logon": 11, "user": 12, "encrypted": 13}
    monkeypatch.setattr(
        keyring,
        "find_key",
        lambda name: keyring.KeyringRef(serials[name], name, f"kstream:{name}", 32, "user"),
    )
    monkeypatch.setattr(keyring, "invalidate", lambda ref: removed.append(ref.serial))
    return removed


def test_rm_of_a_logon_key_without_a_terminal_needs_yes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    removed = _fake_keys(monkeypatch)
    monkeypatch.setattr(os, "isatty", lambda fd: False)
    code, out, err = run_main(capsys, "key", "rm", "logon")
    assert (code, out, removed) == (2, "", [])
    assert one_error(err, "") == (
        "kstream: error: refusing to remove logon key 'kstream:logon' (serial 11) without "
        "asking: no terminal to ask on; add --yes if a backup key file exists or the files it "
        "encrypted are no longer needed"
    )
    for args in (("logon", "--yes"), ("logon", "-y"), ("user",), ("encrypted",)):
        code, out, err = run_main(capsys, "key", "rm", *args)
        assert (code, err) == (0, "")
        assert out.startswith(f"removed {args[0]} key 'kstream:{args[0]}' (serial ")
    assert removed == [11, 11, 12, 13]


#: Runs ``kstream key rm ARGS`` with the fake keys above, in a child process (on a pty).
RM_DRIVER = """
import sys
from kstream.keys import keyring
from kstream.cli.main import main
monkey = {"logon": 11, "user": 12}
keyring.find_key = lambda name: keyring.KeyringRef(monkey[name], name, f"kstream:{name}", 32,
                                                   "user")
def invalidate(ref):
    print(f"INVALIDATED {ref.serial}", flush=True)
keyring.invalidate = invalidate
sys.exit(main(sys.argv[1:]))
"""


class Pty(Keyboard):
    """A command whose stdin, stdout and stderr are a fresh pseudo-terminal (its controlling
    terminal): what a person at the keyboard sees and types."""

    def __init__(self, argv: list[str]) -> None:
        import subprocess

        self.master, slave = os.openpty()

        def controlling_terminal() -> None:  # after setsid: Ctrl-C on it reaches the child
            import fcntl
            import termios

            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=controlling_terminal,
        )
        os.close(slave)
        self.screen = b""

    def finish(self) -> tuple[int, str]:
        """Exit status and everything the terminal showed (\\r\\n as \\n)."""
        code = self.proc.wait(60)
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: the other side is closed
                break
            if not chunk:
                break
            self.screen += chunk
        os.close(self.master)
        return code, self.screen.decode().replace("\r\n", "\n")


QUESTION = (
    "kstream: remove logon key 'kstream:logon' (serial 11)? It cannot be read back: "
    "files encrypted with it stay readable only with a backup key file [y/N] "
)


@pytest.mark.parametrize(
    ("answer", "removed"),
    [(b"y\n", True), (b"YES\n", True), (b"n\n", False), (b"\n", False), (b"\x04", False)],
)
def test_rm_of_a_logon_key_asks_on_a_terminal(answer: bytes, removed: bool) -> None:
    import sys

    tty = Pty([sys.executable, "-c", RM_DRIVER, "key", "rm", "logon"])
    tty.expect(b"[y/N] ")
    tty.type(answer)
    code, screen = tty.finish()
    assert code == 0, screen
    # The terminal echoes the answer; Ctrl-D echoes nothing, and kstream ends the line.
    assert screen.startswith(QUESTION + (answer.decode() if answer != b"\x04" else "\n"))
    if removed:
        assert screen.endswith("INVALIDATED 11\nremoved logon key 'kstream:logon' (serial 11)\n"), (
            screen
        )
    else:
        assert "INVALIDATED" not in screen
        assert screen.endswith("\nkstream: notice: kept logon key 'kstream:logon' (serial 11)\n"), (
            screen
        )


def test_rm_on_a_terminal_asks_only_for_a_logon_key_and_ctrl_c_removes_nothing() -> None:
    import sys

    tty = Pty([sys.executable, "-c", RM_DRIVER, "key", "rm", "user"])
    code, screen = tty.finish()
    assert (code, screen) == (0, "INVALIDATED 12\nremoved user key 'kstream:user' (serial 12)\n")
    tty = Pty([sys.executable, "-c", RM_DRIVER, "key", "rm", "--yes", "logon"])
    code, screen = tty.finish()
    assert code == 0 and "[y/N]" not in screen and "INVALIDATED 11" in screen
    tty = Pty([sys.executable, "-c", RM_DRIVER, "key", "rm", "logon"])
    tty.expect(b"[y/N] ")
    tty.type(b"\x03")  # Ctrl-C: the terminal sends SIGINT
    code, screen = tty.finish()
    assert code == 130 and "INVALIDATED" not in screen
    assert screen.endswith("kstream: error: interrupted at the question; nothing was changed\n"), (
        screen
    )


def _keyring_usable() -> bool:
    from kstream.errors import KstreamError

    try:
        keyring.resolve_keyring("user")
    except KstreamError:
        return False
    return True


#: A shell in a new anonymous session keyring (nothing of the caller's is touched): make a
#: logon key there, remove it at the terminal, list what is left.
REAL_RM = """
import os, sys
from kstream.keys import keyring
keyring.keyctl(keyring.KEYCTL_JOIN_SESSION_KEYRING, None)
os.execvp("sh", ["sh", "-c", sys.argv[1]])
"""


@pytest.mark.skipif(not _keyring_usable(), reason="keyring system calls not usable here")
@pytest.mark.parametrize(("answer", "left"), [(b"y\n", []), (b"n\n", ["a"])])
def test_rm_asks_on_a_terminal_with_the_real_keyring(
    tmp_path: Path, answer: bytes, left: list[str]
) -> None:
    import json
    import sys

    k = f"{sys.executable} -m kstream"
    script = (
        f"{k} key gen a --keyring session -q --save {tmp_path}/a.key >/dev/null 2>&1 && "
        f"{k} key rm a; {k} key list --json >{tmp_path}/list.json"
    )
    tty = Pty([sys.executable, "-c", REAL_RM, script])
    tty.expect(
        b"? It cannot be read back: files encrypted with it stay readable only with "
        b"a backup key file [y/N] "
    )
    tty.type(answer)
    code, screen = tty.finish()
    assert code == 0, screen
    assert [k["name"] for k in json.loads((tmp_path / "list.json").read_text())] == left
    assert ("removed logon key 'kstream:a'" in screen) is not bool(left)


@pytest.mark.parametrize("code", [errno.EKEYREVOKED, errno.EKEYEXPIRED])
def test_rm_of_a_key_the_kernel_is_dropping_has_nothing_to_remove(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], code: int
) -> None:
    """Right after 'key rm', a search can still meet the invalidated key (revoked) until
    the kernel's garbage collector drops it; a second rm then says there is nothing to
    remove, as it does once the key is gone, not 'add the key again'."""

    def dead(name: str) -> keyring.KeyringRef:
        raise keyring.keyring_error(OSError(code, os.strerror(code)), f"key 'kstream:{name}'")

    monkeypatch.setattr(keyring, "find_key", dead)
    status, out, err = run_main(capsys, "key", "rm", "gone", "--yes")
    assert (status, out) == (2, "")
    one_error(
        err,
        "no key 'kstream:gone' in the session or user keyring: nothing to remove "
        "(see 'kstream key list')",
    )
