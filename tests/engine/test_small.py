"""The small-file path: the same bytes and the same errors as the async drivers, no loop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from clirun import marked_line, modules_loaded_by, run_main
from kernelsim import host_has_af_alg
from reference import ctr, unframe
from streams import NoInPlaceBackend

import kstream
from kstream.atomic import check_output_path
from kstream.backends.base import Backend
from kstream.cli import runner
from kstream.engine import small
from kstream.engine.drive import run
from kstream.engine.fdio import FdSink, FdSource
from kstream.engine.plan import Plan, RunOptions, make_plan
from kstream.engine.small import SMALL, process_small_file, run_whole, small_input
from kstream.errors import FormatError, IntegrityError, Interrupted, KstreamError, UsageError
from kstream.format import HEADER_SIZE, Header
from kstream.keys.unlock import make_secret

S = 4096  # a small segment, so that a few KiB make several
SIZES = [0, 1, 17, S - 1, S, S + 1, 2 * S, 3 * S + 5]


def notes(message: str) -> None:
    pass


RUN = RunOptions(notify=notes)
OPENSSL = RunOptions(notify=notes, backend="openssl")


def _plan(key: kstream.Key, encrypt: bool, header: Header, backend: Backend | None = None) -> Plan:
    plan = make_plan(
        encrypt=encrypt, key=key, raw_iv=None, header=header, backend="openssl", notify=notes
    )
    return plan if backend is None else plan._replace(backend=backend)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("in_place", [True, False], ids=["update_into", "update"])
async def test_the_whole_driver_writes_what_the_stream_driver_writes(
    tmp_path: Path, size: int, in_place: bool
) -> None:
    key = kstream.Key.generate(256)
    header = Header(suite=key.suite, iv=os.urandom(16), auth_param=S)
    data = os.urandom(size)
    backend = None if in_place else NoInPlaceBackend(blockwise=True)
    plan = _plan(key, True, header, backend)
    whole = plan.prefix + b"".join(run_whole(plan.codec(), memoryview(data)))
    (tmp_path / "p").write_bytes(data)
    with open(tmp_path / "p", "rb") as src, open(tmp_path / "c", "wb") as dst:
        await run(
            _plan(key, True, header, backend),
            FdSource(src.fileno(), "p"),
            FdSink(dst.fileno(), "c"),
        )
    assert whole == (tmp_path / "c").read_bytes()
    assert ctr(key.material(), header.iv, unframe(whole[HEADER_SIZE:])) == data
    opener = _plan(key, False, header, backend).codec()
    assert b"".join(run_whole(opener, memoryview(whole)[HEADER_SIZE:])) == data


def test_raw_mode_is_openssl_ctr(tmp_path: Path) -> None:
    key = kstream.Key.generate(128)
    iv = os.urandom(16)
    data = os.urandom(3 * S + 1)
    (tmp_path / "p").write_bytes(data)
    secret = make_secret(key, None)
    process_small_file(True, str(tmp_path / "p"), str(tmp_path / "c"), secret, RUN, raw_iv=iv)
    assert (tmp_path / "c").read_bytes() == ctr(key.material(), iv, data)


async def _api_error(kind: str, src: Path, dst: Path, **kw: object) -> KstreamError:
    with pytest.raises(KstreamError) as exc:
        await getattr(kstream, f"{kind}_file")(src, dst, backend="openssl", **kw)
    return exc.value


def _small_error(
    kind: str, src: Path, dst: Path, key: kstream.Key | None = None, passphrase: bytes | None = None
) -> KstreamError:
    with pytest.raises(KstreamError) as exc:
        process_small_file(
            kind == "encrypt",
            str(src),
            str(dst),
            make_secret(key, passphrase),
            OPENSSL,
            raw_iv=None,
        )
    return exc.value


def _damaged(blob: bytes, how: str) -> bytes:
    return {
        "truncated": blob[:-5],
        "appended": blob + b"12345",
        "flipped": blob[: HEADER_SIZE + 40]
        + bytes([blob[HEADER_SIZE + 40] ^ 1])
        + blob[HEADER_SIZE + 41 :],
        "header-only": blob[:HEADER_SIZE],
        "short-header": blob[:20],
        "empty": b"",
        "not-kstream": b"hello, world" * 10,
    }[how]


@pytest.mark.parametrize(
    "how",
    ["truncated", "appended", "flipped", "header-only", "short-header", "empty", "not-kstream"],
)
async def test_a_damaged_file_fails_with_the_api_s_words_and_leaves_nothing(
    tmp_path: Path, how: str
) -> None:
    key = kstream.Key.generate(256)
    (tmp_path / "p").write_bytes(os.urandom(5000))
    await kstream.encrypt_file(tmp_path / "p", tmp_path / "c", key=key, backend="openssl")
    (tmp_path / "d").write_bytes(_damaged((tmp_path / "c").read_bytes(), how))
    expected = await _api_error("decrypt", tmp_path / "d", tmp_path / "o1", key=key)
    got = _small_error("decrypt", tmp_path / "d", tmp_path / "o2", key=key)
    assert (type(got), str(got)) == (type(expected), str(expected))
    assert isinstance(got, FormatError | IntegrityError)
    assert sorted(os.listdir(tmp_path)) == ["c", "d", "p"]  # no output, no partial file


async def test_a_wrong_key_and_a_key_for_a_passphrase_file_fail_alike(tmp_path: Path) -> None:
    key, other = kstream.Key.generate(256), kstream.Key.generate(256)
    (tmp_path / "p").write_bytes(b"secret" * 100)
    await kstream.encrypt_file(tmp_path / "p", tmp_path / "c", key=key)
    expected = await _api_error("decrypt", tmp_path / "c", tmp_path / "o", key=other)
    assert str(_small_error("decrypt", tmp_path / "c", tmp_path / "o", key=other)) == str(expected)
    await kstream.encrypt_file(tmp_path / "p", tmp_path / "pc", passphrase=b"pw", work_factor=10)
    expected = await _api_error("decrypt", tmp_path / "pc", tmp_path / "o", key=key)
    got = _small_error("decrypt", tmp_path / "pc", tmp_path / "o", key=key)
    assert isinstance(got, UsageError) and str(got) == str(expected)
    assert not (tmp_path / "o").exists()


def test_a_passphrase_file_round_trips_with_the_api(tmp_path: Path) -> None:
    data = os.urandom(S * 3)
    (tmp_path / "p").write_bytes(data)
    secret = make_secret(None, b"correct horse", work_factor=10)
    process_small_file(True, str(tmp_path / "p"), str(tmp_path / "c"), secret, RUN, raw_iv=None)
    kstream.run(kstream.decrypt_file(tmp_path / "c", tmp_path / "d", passphrase=b"correct horse"))
    assert (tmp_path / "d").read_bytes() == data


def test_an_existing_output_is_refused_and_kept(tmp_path: Path) -> None:
    (tmp_path / "p").write_bytes(b"x")
    (tmp_path / "c").write_bytes(b"keep me")
    with pytest.raises(UsageError, match="already exists"):
        process_small_file(
            True,
            str(tmp_path / "p"),
            str(tmp_path / "c"),
            make_secret(kstream.Key.generate(), None),
            RUN,
            raw_iv=None,
        )
    assert (tmp_path / "c").read_bytes() == b"keep me"


def test_a_file_that_grew_past_the_limit_is_left_to_the_streaming_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The size was checked first (stat); a file that grew since is not read whole: at most
    SMALL + 1 bytes, then nothing written, and the command line streams it instead."""
    data = os.urandom(SMALL + 5)
    (tmp_path / "p").write_bytes(data)
    key = kstream.Key.generate()
    assert (
        process_small_file(
            True,
            str(tmp_path / "p"),
            str(tmp_path / "c"),
            make_secret(key, None),
            RUN,
            raw_iv=None,
        )
        is False
    )
    assert sorted(os.listdir(tmp_path)) == ["p"]
    # The command line: the stat said small (it grew just after), the read says no.
    (tmp_path / "k").write_text("00" * 32)
    results: list[bool] = []

    def spy(*args: object, **kw: object) -> bool:
        results.append(process_small_file(*args, **kw))  # type: ignore[arg-type]
        return results[-1]

    monkeypatch.setattr(small, "small_input", lambda path: True)
    monkeypatch.setattr(small, "process_small_file", spy)
    assert (
        run_main(
            capsys,
            "encrypt",
            "-q",
            "--raw",
            "--iv",
            "00" * 16,
            "-k",
            tmp_path / "k",
            tmp_path / "p",
            tmp_path / "c",
        )[0]
        == 0
    )
    assert results == [False]
    key = kstream.Key.from_file(tmp_path / "k")
    assert (tmp_path / "c").read_bytes() == ctr(key.material(), bytes(16), data)
    assert sorted(os.listdir(tmp_path)) == ["c", "k", "p"]


@pytest.mark.parametrize("limit", [1, 4999, 5000, 5001, SMALL + 1])
def test_the_whole_input_is_read_up_to_the_limit_whatever_its_size_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    """The read asks for the size fstat gives, and one byte more; a file that is longer by
    then (it grew), or a pipe (size 0), is still read to its end or to ``limit``."""
    data = os.urandom(5000)
    (tmp_path / "p").write_bytes(data)
    fd = os.open(tmp_path / "p", os.O_RDONLY)
    try:
        assert small._read_at_most(fd, limit) == data[:limit]
    finally:
        os.close(fd)
    stale = os.stat_result((0o100600, 0, 0, 1, 0, 0, 10, 0, 0, 0))  # 10 bytes, it said
    monkeypatch.setattr(os, "fstat", lambda fd: stale)
    fd = os.open(tmp_path / "p", os.O_RDONLY)
    try:
        assert small._read_at_most(fd, limit) == data[:limit]
    finally:
        os.close(fd)
    monkeypatch.undo()
    r, w = os.pipe()
    try:
        os.write(w, data)
        os.close(w)
        assert small._read_at_most(r, limit) == data[:limit]
    finally:
        os.close(r)


def test_what_the_small_path_takes(tmp_path: Path) -> None:
    (tmp_path / "small").write_bytes(b"x" * SMALL)
    (tmp_path / "big").write_bytes(b"x" * (SMALL + 1))
    os.mkfifo(tmp_path / "fifo")
    assert small_input(str(tmp_path / "small"))
    assert not small_input(str(tmp_path / "big"))
    assert not small_input(str(tmp_path / "fifo"))
    assert not small_input(str(tmp_path / "missing"))  # the async path names the error

    # The output side: the command line takes the small path only where the one output
    # check says "a file, written atomically" (False), never for a stream (True).
    def stream(path: str) -> bool:
        return check_output_path(path, force=True)

    assert not stream(str(tmp_path / "new")) and not stream(str(tmp_path / "small"))
    assert stream(str(tmp_path / "fifo"))
    assert stream("/dev/null")
    assert stream("/dev/stdout") and stream("/dev/fd/1")


def test_sigterm_and_ctrl_c_end_the_work_with_cleanup() -> None:
    cleaned = []

    def work(sig: int) -> None:
        try:
            os.kill(os.getpid(), sig)
            signal.pause() if sig == signal.SIGTERM else None
        finally:
            cleaned.append(sig)

    with pytest.raises(Interrupted) as exc:
        runner.run_sync(lambda: work(signal.SIGTERM))
    assert exc.value.exit_code == 143
    with pytest.raises(Interrupted) as exc:
        runner.run_sync(lambda: work(signal.SIGINT))
    assert exc.value.exit_code == 130
    assert cleaned == [signal.SIGTERM, signal.SIGINT]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


@pytest.mark.parametrize("size, loop", [(5000, False), (SMALL + 1, True)])
def test_the_command_line_starts_an_event_loop_only_for_bigger_files(
    tmp_path: Path, size: int, loop: bool
) -> None:
    (tmp_path / "in").write_bytes(os.urandom(size))
    key = tmp_path / "k"
    key.write_text("00" * 32)
    loaded = {
        m.split(".")[0]
        for m in modules_loaded_by(
            ["encrypt", "-q", "-k", key, tmp_path / "in", tmp_path / "c"],
            ["decrypt", "-q", "-k", key, tmp_path / "c", tmp_path / "out"],
        )
    }
    assert "cryptography" in loaded
    if loop:
        assert {"asyncio", "uvloop"} <= loaded
    else:
        assert not loaded & {"asyncio", "uvloop", "aiofiles", "tqdm"}
    assert (tmp_path / "out").read_bytes() == (tmp_path / "in").read_bytes()


#: Modules a small file's run imported before and does without now: each took longer to
#: import than such a file takes to encrypt (docs/benchmark.md, "Many files and start-up"). The
#: records are NamedTuples or plain classes (no ``dataclasses``, which imports ``inspect``),
#: paths are strings (no ``pathlib``), malloc is tuned only for worker threads (no
#: ``ctypes``), and the keyring, the kernel's streams, /proc/crypto's parser and OpenSSL's
#: whole binding (for its version) are imported only when a run uses them. argparse gets its
#: terminal width without ``shutil``, and the kernel's probe makes its socket with
#: ``_socket``, so that a host without AF_ALG never imports ``socket``; the runner needs
#: only ``_signal``.
NOT_FOR_A_SMALL_FILE = {
    "dataclasses",
    "inspect",
    "pathlib",
    "ctypes",
    "json",
    "termios",
    "shutil",
    "socket",
    "string",
    "signal",
    "kstream.keys.keyring",
    "kstream.keys.encrypted",
    "kstream.cli.key",
    "kstream.memory",
    "kstream.backends.kernel.procfs",
    "kstream.backends.kernel.ctr",
    "cryptography.hazmat.backends.openssl.backend",
    "threading",
    "argparse",  # a plain command line is read without it (kstream.cli.cipher_args)
    "gettext",
    "locale",
    "binascii",
    "kstream.backends.verify",
}


@pytest.mark.parametrize("backend", ["openssl", "auto"])
def test_a_small_file_s_run_imports_nothing_it_can_do_without(tmp_path: Path, backend: str) -> None:
    """Encrypt and decrypt with a key file, counted beyond what the bare interpreter holds
    (an editable install's import hook brings ``pathlib`` before kstream does anything).
    ``auto`` probes the kernel: without AF_ALG the probe's first call fails, and the run
    needs none of the kernel's stream modules."""
    if backend == "auto" and host_has_af_alg():
        pytest.skip("with AF_ALG, auto uses the kernel, which reads /proc/crypto")
    (tmp_path / "in").write_bytes(os.urandom(5000))
    key = tmp_path / "k"
    key.write_text("00" * 32)
    bare = set(
        subprocess.run(
            [sys.executable, "-c", "import sys; print(*sys.modules)"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    )
    loaded = modules_loaded_by(
        ["encrypt", "-q", "--backend", backend, "-k", key, tmp_path / "in", tmp_path / "c"],
        ["decrypt", "-q", "--backend", backend, "-k", key, tmp_path / "c", tmp_path / "out"],
    )
    assert "kstream.engine.small" in loaded  # the small path really ran
    assert not (loaded - bare) & NOT_FOR_A_SMALL_FILE
    assert (tmp_path / "out").read_bytes() == (tmp_path / "in").read_bytes()


def test_a_small_file_s_run_compiles_no_source_text(tmp_path: Path) -> None:
    """Nothing on the path compiles a string (typing does, for each NamedTuple field of a
    module with ``from __future__ import annotations``): the first compile() in a process
    builds the ast module's types, which costs more than the encryption. The import system's
    own compiles (of source bytes, with PYTHONDONTWRITEBYTECODE) are not counted. OpenSSL,
    so that a host with AF_ALG runs the same path."""
    (tmp_path / "in").write_bytes(os.urandom(5000))
    key, src, mid, out = (str(tmp_path / name) for name in ("k", "in", "c", "out"))
    (tmp_path / "k").write_text("00" * 32)
    runs = [
        [way, "-q", "--backend", "openssl", "-k", key, a, b]
        for way, a, b in (("encrypt", src, mid), ("decrypt", mid, out))
    ]
    code = (
        "import builtins, sys\nfrom kstream.cli.main import main\nseen = []\n"
        "real = builtins.compile\n"
        "def spy(source, *args, **kwargs):\n"
        "    if isinstance(source, str):\n        seen.append(source)\n"
        "    return real(source, *args, **kwargs)\n"
        "builtins.compile = spy\n"
        f"for argv in {runs!r}:\n    assert main(argv) == 0\n"
        "print('compiled:', repr(seen), file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert marked_line(proc.stderr, "compiled:").strip() == "[]"
    assert (tmp_path / "out").read_bytes() == (tmp_path / "in").read_bytes()
