"""``kstream encrypt/decrypt/inspect`` run as a real subprocess: files, pipes, errors, atomic
output (kstream.cli.cipher)."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from clirun import KST, fails, keybytes, kst
from reference import ctr, unframe

from kstream.format import HEADER_SIZE, MAGIC, Header
from kstream.selftest import NIST_CTR_VECTORS, CtrVector

needs_openssl = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="the openssl command is not installed"
)


@pytest.mark.parametrize("bits", [128, 192, 256])
def test_file_roundtrip(tmp_path: Path, plain: tuple[Path, bytes], bits: int) -> None:
    path, data = plain
    key = tmp_path / "k"
    kst("keygen", "--bits", bits, key)
    kst("encrypt", "-k", key, path, tmp_path / "c")
    blob = (tmp_path / "c").read_bytes()
    header = Header.parse(blob)
    assert header.suite.key_size * 8 == bits
    assert ctr(keybytes(key), header.iv, unframe(blob[HEADER_SIZE:])) == data
    kst("decrypt", "--key-file", key, tmp_path / "c", tmp_path / "d")
    assert (tmp_path / "d").read_bytes() == data


def _kernel_here() -> bool:
    from kstream.backends.kernel.backend import KernelBackend

    return KernelBackend().probe().available


def test_auto_backend_falls_back_with_one_short_notice(
    tmp_path: Path, keyfile: Path, plain: tuple[Path, bytes]
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KSTREAM_BACKEND"}
    proc = kst("encrypt", "-k", keyfile, plain[0], tmp_path / "c", env=env)
    notices = proc.stderr.decode().splitlines()
    from kstream.backends.kernel.backend import KernelBackend

    if KernelBackend().probe().available:
        assert notices == []
    else:
        assert notices == [
            "kstream: notice: kernel backend unavailable here; using openssl "
            "(see 'kstream backends')"
        ]
    assert kst("encrypt", "-q", "-k", keyfile, plain[0], tmp_path / "c2").stderr == b""
    # -q before the command is the same -q.
    assert kst("-q", "encrypt", "-k", keyfile, plain[0], tmp_path / "c3").stderr == b""
    assert kst("-q", "decrypt", "-k", keyfile, tmp_path / "c3", tmp_path / "d").stderr == b""
    assert (tmp_path / "d").read_bytes() == plain[1]


@pytest.mark.parametrize(
    "choice",
    [
        ["--backend", "auto"],
        ["--backend", "openssl"],
        ["KSTREAM_BACKEND=auto"],
        ["KSTREAM_BACKEND=openssl"],
    ],
)
def test_a_chosen_backend_gets_no_fallback_notice(
    tmp_path: Path, keyfile: Path, plain: tuple[Path, bytes], choice: list[str]
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KSTREAM_BACKEND"}
    flags = choice
    if choice[0].startswith("KSTREAM_BACKEND="):
        env["KSTREAM_BACKEND"] = choice[0].split("=", 1)[1]
        flags = []
    proc = kst("encrypt", *flags, "-k", keyfile, plain[0], tmp_path / "c", env=env)
    assert proc.stderr == b""
    proc = kst("decrypt", *flags, "-k", keyfile, tmp_path / "c", tmp_path / "d", env=env)
    assert proc.stderr == b"" and (tmp_path / "d").read_bytes() == plain[1]
    proc = kst("encrypt", *flags, "-k", keyfile, "--suffix", ".y", plain[0], env=env)
    assert proc.stderr == b""  # many files too


def test_kstream_backend_sets_the_default_and_the_flag_wins(
    tmp_path: Path, keyfile: Path, plain: tuple[Path, bytes]
) -> None:
    env = {**os.environ, "KSTREAM_BACKEND": "kernel"}
    if not _kernel_here():
        fails(
            "encrypt",
            "-k",
            keyfile,
            plain[0],
            tmp_path / "c",
            code=3,
            match="the kernel backend is not available",
            env=env,
        )
    proc = kst("encrypt", "--backend", "openssl", "-k", keyfile, plain[0], tmp_path / "c2", env=env)
    assert proc.stderr == b""
    line = fails(
        "encrypt",
        "-k",
        keyfile,
        plain[0],
        tmp_path / "c3",
        code=2,
        match="the environment variable KSTREAM_BACKEND='aes' is not a backend; set "
        "it to one of auto, kernel, openssl, or unset it",
        env={**os.environ, "KSTREAM_BACKEND": "aes"},
    )
    assert line.startswith("kstream: error: the environment variable")
    assert not (tmp_path / "c3").exists()


def test_a_driver_that_would_not_be_used_is_an_error(
    tmp_path: Path, keyfile: Path, plain: tuple[Path, bytes]
) -> None:
    fails(
        "encrypt",
        "--backend",
        "openssl",
        "--driver",
        "ctr-aes-aesni",
        "-k",
        keyfile,
        plain[0],
        tmp_path / "c",
        code=2,
        match="--driver ctr-aes-aesni cannot be used: openssl does not use kernel drivers",
    )
    if not _kernel_here():
        fails(
            "encrypt",
            "--driver",
            "ctr-aes-aesni",
            "-k",
            keyfile,
            plain[0],
            tmp_path / "c",
            code=2,
            match="--driver ctr-aes-aesni cannot be used: the kernel backend is not "
            "available here; see 'kstream backends'",
        )
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    ("command", "description"),
    [
        (
            "encrypt",
            "Encrypt IN into OUT (each a path, or '-' for stdin or stdout),\nor each FILE "
            "into FILE.kst.",
        ),
        (
            "decrypt",
            "Decrypt IN into OUT (each a path, or '-' for stdin or stdout),\nor each "
            "FILE.kst back into FILE.",
        ),
    ],
)
def test_the_commands_describe_themselves(command: str, description: str) -> None:
    out = kst(command, "--help", env={**os.environ, "COLUMNS": "200"}).stdout.decode()
    assert f"\n\n{description}\n\n" in out
    assert "$KSTREAM_BACKEND" in " ".join(out.split())


@pytest.mark.parametrize("command", ["encrypt", "decrypt"])
def test_help_fits_80_columns_and_ends_with_examples(command: str) -> None:
    out = kst(command, "--help", env={**os.environ, "COLUMNS": "80"}).stdout.decode()
    assert [line for line in out.splitlines() if len(line) > 80] == []
    assert out.startswith(f"usage: kstream {command} [options] KEY [IN [OUT]]\n")
    examples = out[out.index("\nexamples:\n") : out.index("\nexit status:")]
    lines = [line.split()[:2] for line in examples.splitlines()[2:] if line.startswith("  ")]
    assert ["kstream", command] in lines
    for flag in ("-o", "--suffix", "--key-name", "|"):
        assert flag in examples
    assert "70   internal error" in out


def test_the_manual_has_an_examples_section() -> None:
    page = kst("man").stdout.decode()
    section = page[page.index(".SH EXAMPLES") : page.index('.SH "EXIT STATUS"')]
    assert "kstream encrypt \\-k k.key \\-o report.pdf.kst report.pdf" in section
    assert "kstream decrypt \\-k k.key \\-\\-suffix .kst *.kst" in section
    assert page.index("report.pdf") > page.index(".SH EXAMPLES")  # not under COMMANDS too


def test_key_fd(tmp_path: Path, keyfile: Path, plain: tuple[Path, bytes]) -> None:
    fd = os.open(keyfile, os.O_RDONLY)
    try:
        kst("encrypt", "--key-fd", fd, plain[0], tmp_path / "c", pass_fds=(fd,))
    finally:
        os.close(fd)
    kst("decrypt", "-k", keyfile, tmp_path / "c", tmp_path / "d")
    assert (tmp_path / "d").read_bytes() == plain[1]


def test_pipes_end_to_end(tmp_path: Path, keyfile: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("hello\n")
    (tree / "sub" / "b.bin").write_bytes(os.urandom(300_000))
    script = (
        f"tar -C {tmp_path} -c tree | {' '.join(KST)} encrypt -k {keyfile} - - | "
        f"{' '.join(KST)} decrypt -k {keyfile} - - | tar t | sort"
    )
    out = (
        subprocess.run(
            ["bash", "-o", "pipefail", "-c", script], capture_output=True, check=True, timeout=60
        )
        .stdout.decode()
        .split()
    )
    assert out == ["tree/", "tree/a.txt", "tree/sub/", "tree/sub/b.bin"]


@needs_openssl
@pytest.mark.parametrize("bits", [128, 192, 256])
def test_openssl_interop(tmp_path: Path, plain: tuple[Path, bytes], bits: int) -> None:
    path, data = plain
    key = tmp_path / "k"
    kst("keygen", "--bits", bits, key)
    khex = key.read_text().strip()
    iv = os.urandom(16).hex()
    cipher = f"-aes-{bits}-ctr"
    # kstream --raw -> openssl
    kst("encrypt", "--raw", "--iv", iv, "-k", key, path, tmp_path / "raw")
    back = subprocess.run(
        ["openssl", "enc", "-d", cipher, "-K", khex, "-iv", iv, "-in", tmp_path / "raw"],
        capture_output=True,
        check=True,
    ).stdout
    assert back == data
    # openssl -> kstream --raw
    subprocess.run(
        ["openssl", "enc", cipher, "-K", khex, "-iv", iv, "-in", path, "-out", tmp_path / "ossl"],
        check=True,
    )
    assert (tmp_path / "ossl").read_bytes() == (tmp_path / "raw").read_bytes()
    kst("decrypt", "--raw", "--iv", iv, "-k", key, tmp_path / "ossl", tmp_path / "d")
    assert (tmp_path / "d").read_bytes() == data
    # header IV + body with the segment framing stripped -> openssl
    kst("encrypt", "-k", key, path, tmp_path / "c")
    info = json.loads(kst("inspect", "--json", tmp_path / "c").stdout)
    body = unframe((tmp_path / "c").read_bytes()[HEADER_SIZE:])
    back = subprocess.run(
        ["openssl", "enc", "-d", cipher, "-K", khex, "-iv", info["iv"]],
        input=body,
        capture_output=True,
        check=True,
    ).stdout
    assert back == data


def test_inspect(tmp_path: Path, keyfile: Path, plain: tuple[Path, bytes]) -> None:
    kst("encrypt", "-k", keyfile, plain[0], tmp_path / "c")
    info = json.loads(kst("inspect", "--json", tmp_path / "c").stdout)
    header = Header.parse((tmp_path / "c").read_bytes())
    assert info["version"] == 1 and info["cipher"] == "AES-256-CTR"
    assert info["iv"] == header.iv.hex() and info["plaintext_size"] == len(plain[1])
    assert info["body_size"] == len(plain[1]) + 20  # one segment: 4-byte frame + 16-byte tag
    assert info["segment_size"] == 1032192 and info["auth_scheme"] == 1
    piped = json.loads(kst("inspect", "--json", "-", input=(tmp_path / "c").read_bytes()).stdout)
    assert piped == info
    text = kst("inspect", tmp_path / "c").stdout.decode()
    assert header.iv.hex() in text and "AES-256-CTR" in text


def _header_variant(blob: bytes, offset: int, value: int) -> bytes:
    data = bytearray(blob)
    data[offset] = value
    return bytes(data)


def test_decrypt_rejections(tmp_path: Path, keyfile: Path, plain: tuple[Path, bytes]) -> None:
    kst("encrypt", "-k", keyfile, plain[0], tmp_path / "c")
    blob = (tmp_path / "c").read_bytes()
    cases = {
        "bad magic": (b"GIF89a" + blob[6:], "not a kstream file"),
        "version": (_header_variant(blob, 8, 9), "unsupported kstream format version 9"),
        "cipher id": (_header_variant(blob, 9, 7), "unknown cipher suite id 7"),
        "truncated": (blob[:20], "file is truncated"),
        "empty": (b"", "input is empty"),
    }
    for name, (content, message) in cases.items():
        bad = tmp_path / f"bad-{name}"
        bad.write_bytes(content)
        fails("decrypt", "-k", keyfile, bad, tmp_path / "out", code=1, match=message)
        fails("decrypt", "-k", keyfile, "-", "-", input=content, code=1, match=message)
        assert not (tmp_path / "out").exists()
    small = tmp_path / "k128"
    kst("keygen", "--bits", 128, small)
    fails(
        "decrypt",
        "-k",
        small,
        tmp_path / "c",
        tmp_path / "out",
        code=2,
        match="the key is AES-128 (16 bytes) but the file was encrypted with AES-256-CTR",
    )


def test_usage_errors(tmp_path: Path, keyfile: Path, plain: tuple[Path, bytes]) -> None:
    p = plain[0]
    (tmp_path / "exists").write_bytes(b"precious")
    fails("encrypt", p, tmp_path / "c", code=2, match="no key given")
    fails(
        "encrypt", "-k", tmp_path / "nokey", p, tmp_path / "c", code=2, match="cannot read key file"
    )
    fails(
        "encrypt",
        "-k",
        keyfile,
        p,
        tmp_path / "exists",
        code=2,
        match="exists and is not kstream ciphertext: encrypt does not replace it",
    )
    assert (tmp_path / "exists").read_bytes() == b"precious"
    fails("encrypt", "-k", keyfile, p, p, code=2, match="same file")
    link = tmp_path / "link"
    link.symlink_to(p)
    fails("encrypt", "-f", "-k", keyfile, p, link, code=2, match="same file")
    fails("encrypt", "-k", keyfile, p, tmp_path, code=2, match="is a directory")
    fails(
        "encrypt",
        "-k",
        keyfile,
        "--iv",
        "00" * 16,
        p,
        tmp_path / "c",
        code=2,
        match="--iv is only allowed with --raw",
    )
    fails("encrypt", "-k", keyfile, "--raw", p, tmp_path / "c", code=2, match="needs --iv")
    fails(
        "encrypt",
        "-k",
        keyfile,
        "--raw",
        "--iv",
        "zz" * 16,
        p,
        tmp_path / "c",
        code=2,
        match="hex digits",
    )
    fails(
        "encrypt",
        "-k",
        keyfile,
        "--raw",
        "--iv",
        "00" * 8,
        p,
        tmp_path / "c",
        code=2,
        match="32 hex digits",
    )
    fails(
        "encrypt",
        "-k",
        keyfile,
        tmp_path / "missing",
        tmp_path / "c",
        code=4,
        match="cannot open input",
    )
    fails("encrypt", "--bogus", p, tmp_path / "c", code=2, match="unrecognized arguments")
    fails(
        "encrypt",
        "-k",
        keyfile,
        "--backend",
        "quantum",
        p,
        tmp_path / "c",
        code=2,
        match="invalid choice",
    )
    assert not (tmp_path / "c").exists()


def test_backend_kernel_fails_clearly_without_af_alg(
    tmp_path: Path, keyfile: Path, plain: tuple[Path, bytes]
) -> None:
    from kstream.backends.kernel.backend import KernelBackend

    if KernelBackend().probe().available:
        pytest.skip("this host has a working kernel backend")
    fails(
        "encrypt",
        "--backend",
        "kernel",
        "-k",
        keyfile,
        plain[0],
        tmp_path / "c",
        code=3,
        match="the kernel backend is not available",
    )
    assert not (tmp_path / "c").exists()


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def test_write_failure_mid_stream_leaves_nothing(tmp_path: Path, keyfile: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(os.urandom(5 << 20))
    out = tmp_path / "out"
    out.write_bytes(MAGIC + b"precious")  # an older encryption, replaced only once complete
    proc = subprocess.run(
        [*KST, "encrypt", "-f", "-k", str(keyfile), str(big), str(out)],
        capture_output=True,
        preexec_fn=_limit_file_size,
        timeout=60,
    )
    assert proc.returncode == 4, proc.stderr
    assert b"cannot write output" in proc.stderr and b"Traceback" not in proc.stderr
    assert out.read_bytes() == MAGIC + b"precious"
    assert sorted(os.listdir(tmp_path)) == ["big", "key", "out"]


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_disk_full(tmp_path: Path, keyfile: Path) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (tmp_path / "big").write_bytes(os.urandom(3 << 20))
        (mnt / "out").write_bytes(MAGIC + b"precious")  # an older encryption
        fails(
            "encrypt",
            "-f",
            "-k",
            keyfile,
            tmp_path / "big",
            mnt / "out",
            code=4,
            match="No space left on device",
        )
        assert (mnt / "out").read_bytes() == MAGIC + b"precious"
        assert os.listdir(mnt) == ["out"]
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def wait_for_partial(directory: Path) -> None:
    """Wait (30 s at most) until kstream's temporary output file exists in ``directory``."""
    deadline = time.monotonic() + 30
    while not any(n.endswith(".kstream-partial") for n in os.listdir(directory)):
        assert time.monotonic() < deadline, "no temp file appeared"
        time.sleep(0.05)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_mid_stream_leaves_nothing(
    tmp_path: Path, keyfile: Path, sig: int, code: int
) -> None:
    out = tmp_path / "out"
    out.write_bytes(MAGIC + b"precious")  # an older encryption, replaced only once complete
    proc = subprocess.Popen(
        [*KST, "encrypt", "-f", "-k", str(keyfile), "-", str(out)],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    proc.stdin.write(os.urandom(3 << 20))
    proc.stdin.flush()
    wait_for_partial(tmp_path)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert b"Traceback" not in err and b"kstream: error:" in err
    assert out.read_bytes() == MAGIC + b"precious"
    assert sorted(os.listdir(tmp_path)) == ["key", "out"]


def test_sigkill_leaves_only_a_named_temp_file(tmp_path: Path, keyfile: Path) -> None:
    proc = subprocess.Popen(
        [*KST, "encrypt", "-k", str(keyfile), "-", str(tmp_path / "out")],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    proc.stdin.write(os.urandom(1 << 20))
    proc.stdin.flush()
    wait_for_partial(tmp_path)
    proc.kill()
    proc.wait(timeout=30)
    names = sorted(os.listdir(tmp_path))
    assert "out" not in names
    assert next(n for n in names if n != "key").startswith(".out.")


@pytest.mark.parametrize("vector", NIST_CTR_VECTORS, ids=lambda v: v.section)
def test_nist_vectors_through_raw_mode(tmp_path: Path, vector: CtrVector) -> None:
    (tmp_path / "k").write_bytes(vector.key)
    (tmp_path / "in").write_bytes(vector.input)
    direction = "encrypt" if "Encrypt" in vector.title else "decrypt"
    kst(
        direction,
        "--raw",
        "--iv",
        vector.counter.hex(),
        "-k",
        tmp_path / "k",
        tmp_path / "in",
        tmp_path / "out",
    )
    assert (tmp_path / "out").read_bytes() == vector.output
    piped = kst(
        direction,
        "--raw",
        "--iv",
        vector.counter.hex(),
        "-k",
        tmp_path / "k",
        "-",
        "-",
        input=vector.input,
    ).stdout
    assert piped == vector.output


@pytest.mark.parametrize(
    ("mode", "who"), [(0o640, "its group"), (0o604, "others"), (0o644, "its group and others")]
)
def test_a_key_file_readable_by_others_is_used_with_one_warning(
    tmp_path: Path, keyfile: Path, plain: tuple[Path, bytes], mode: int, who: str
) -> None:
    keyfile.chmod(mode)
    proc = kst("encrypt", "--backend", "openssl", "-k", keyfile, plain[0], tmp_path / "c")
    assert proc.stderr.decode().splitlines() == [
        f"kstream: warning: key file '{keyfile}' is readable by {who} (mode {mode:04o}); "
        f"anyone who can read it can decrypt with it: chmod 600 '{keyfile}'"
    ]
    assert kst("decrypt", "-q", "-k", keyfile, tmp_path / "c", tmp_path / "d").stderr == b""
    assert (tmp_path / "d").read_bytes() == plain[1]


def test_a_private_key_file_gets_no_warning(
    tmp_path: Path, keyfile: Path, plain: tuple[Path, bytes]
) -> None:
    assert keyfile.stat().st_mode & 0o777 == 0o600
    keyfile.chmod(0o400)
    proc = kst("encrypt", "--backend", "openssl", "-k", keyfile, plain[0], tmp_path / "c")
    assert proc.stderr == b""


def test_raw_iv_random_prints_the_iv_that_decrypts(
    tmp_path: Path, keyfile: Path, plain: tuple[Path, bytes]
) -> None:
    """One stderr line, also with -q; the raw output is CTR at exactly that IV, and two
    runs pick different IVs."""
    ivs = []
    for out in ("c1", "c2"):
        proc = kst(
            "encrypt", "-q", "--raw", "--iv", "random", "-k", keyfile, plain[0], tmp_path / out
        )
        [line] = proc.stderr.decode().splitlines()
        assert line.startswith("kstream: iv: ")
        ivs.append(bytes.fromhex(line.removeprefix("kstream: iv: ")))
        assert len(ivs[-1]) == 16
        assert (tmp_path / out).read_bytes() == ctr(keybytes(keyfile), ivs[-1], plain[1])
    assert ivs[0] != ivs[1]
    kst(
        "decrypt",
        "-q",
        "--raw",
        "--iv",
        ivs[0].hex(),
        "-k",
        keyfile,
        tmp_path / "c1",
        tmp_path / "d",
    )
    assert (tmp_path / "d").read_bytes() == plain[1]


def test_raw_iv_random_is_refused_for_decryption_and_explained_in_help(
    tmp_path: Path, keyfile: Path, plain: tuple[Path, bytes]
) -> None:
    fails(
        "decrypt",
        "--raw",
        "--iv",
        "random",
        "-k",
        keyfile,
        plain[0],
        tmp_path / "d",
        code=2,
        match="--iv random only works when encrypting; to decrypt, give the IV "
        "that encryption printed",
    )
    assert not (tmp_path / "d").exists()
    help_text = " ".join(kst("encrypt", "--help").stdout.decode().split())
    assert "reveal the XOR of their plaintexts" in help_text
    assert "reuses that file's keystream" in help_text


@pytest.mark.parametrize("size", [10_000, 3 << 20], ids=["small-file path", "ranges"])
def test_an_unexpected_error_is_one_line_and_exit_70(
    tmp_path: Path,
    keyfile: Path,
    size: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What cryptography 51 did to every run: not a user mistake, so no usage status; one
    line that asks for a report, the documented status (README: exit statuses), and no
    output file left behind."""
    from clirun import run_main

    from kstream.backends.openssl import OpenSSLStream

    class Refusing:  # what cryptography 51 did with in-place buffers
        def update_into(self, data: object, out: object) -> int:
            raise ValueError("data and buf must not overlap")

        update = update_into

    monkeypatch.setattr(OpenSSLStream, "_context", lambda self: Refusing())
    work = tmp_path / "work"
    work.mkdir()
    (work / "p").write_bytes(os.urandom(size))
    for args in (
        ["encrypt", "-q", "-k", keyfile, work / "p", work / "c"],
        ["encrypt", "-q", "-k", keyfile, "--suffix", ".kst", work / "p"],
    ):
        code, _, err = run_main(capsys, *args)
        assert code == 70
        line = err.splitlines()[0]  # many-files mode names the file first
        assert line.startswith("kstream: error: ") and line.endswith(
            "the openssl cipher failed unexpectedly (ValueError: data and buf must not "
            "overlap); please report this"
        )
        assert sorted(os.listdir(work)) == ["p"]
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert "| 70 | internal error" in readme
