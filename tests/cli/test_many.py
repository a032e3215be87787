"""Many files in one run (``--suffix``, ``--output-dir``, one lone FILE)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from clirun import KST, kst, run_main
from kernelsim import host_has_af_alg
from streams import open_fifo_writer

import kstream.api
from kstream.cli.many import SEVERITY, most_severe, plan_outputs
from kstream.errors import UsageError


def make_files(directory: Path, sizes: list[int]) -> dict[Path, bytes]:
    files = {}
    for i, size in enumerate(sizes):
        path = directory / f"f{i}.bin"
        path.write_bytes(os.urandom(size))
        files[path] = path.read_bytes()
    return files


def test_encrypt_and_decrypt_many_files_next_to_their_inputs(tmp_path: Path, keyfile: Path) -> None:
    files = make_files(tmp_path, [0, 1, 4096, 1_500_000])
    proc = kst("encrypt", "-k", keyfile, "--suffix", ".enc", *files)
    assert (
        proc.stderr.decode()
        .splitlines()[-1]
        .startswith("kstream: notice: 4 files: 4 done, 0 failed")
    )
    for path in files:
        enc = path.with_name(path.name + ".enc")
        assert enc.read_bytes()[:4] == b"KSTR"[:4] or enc.stat().st_size > 32
        path.unlink()
    kst(
        "decrypt", "-k", keyfile, "--suffix", ".enc", *[p.with_name(p.name + ".enc") for p in files]
    )
    for path, data in files.items():
        assert path.read_bytes() == data
        # each file has its own random IV: no two headers are alike
    headers = {p.with_name(p.name + ".enc").read_bytes()[:32] for p in files}
    assert len(headers) == len(files)


def test_one_lone_file_is_many_files_mode_with_the_default_suffix(
    tmp_path: Path, keyfile: Path
) -> None:
    (tmp_path / "notes.txt").write_bytes(b"hello")
    kst("encrypt", "-k", keyfile, tmp_path / "notes.txt")
    assert (tmp_path / "notes.txt.kst").exists()
    (tmp_path / "notes.txt").unlink()
    proc = kst("decrypt", "-k", keyfile, tmp_path / "notes.txt.kst")
    assert (tmp_path / "notes.txt").read_bytes() == b"hello"
    assert b"files:" not in proc.stderr  # no summary for one file


def test_output_dir_and_decrypted_outputs_equal_the_inputs(tmp_path: Path, keyfile: Path) -> None:
    files = make_files(tmp_path, [10, 70_000])
    (tmp_path / "enc").mkdir()
    (tmp_path / "dec").mkdir()
    kst("encrypt", "-k", keyfile, "--output-dir", tmp_path / "enc", *files)
    encrypted = sorted((tmp_path / "enc").iterdir())
    assert [p.name for p in encrypted] == ["f0.bin.kst", "f1.bin.kst"]
    kst("decrypt", "-k", keyfile, "--output-dir", tmp_path / "dec", *encrypted)
    for path, data in files.items():
        assert (tmp_path / "dec" / path.name).read_bytes() == data


def test_failures_are_per_file_and_the_exit_status_is_the_most_severe(
    tmp_path: Path, keyfile: Path
) -> None:
    files = make_files(tmp_path, [100, 200, 300])
    good = list(files)
    kst("encrypt", "-k", keyfile, *good[:2], "--suffix", ".kst")
    # a tampered file (1), an existing output (2), a missing input and a directory (4)
    tampered = good[0].with_name("f0.bin.kst")
    blob = bytearray(tampered.read_bytes())
    blob[-1] ^= 1
    tampered.write_bytes(bytes(blob))
    good[0].unlink()
    good[1].write_bytes(b"left alone")  # f1.bin exists: decrypting f1.bin.kst must refuse it
    (tmp_path / "adir.kst").mkdir()
    proc = kst(
        "decrypt",
        "-k",
        keyfile,
        "--suffix",
        ".kst",
        tampered,
        good[1].with_name("f1.bin.kst"),
        tmp_path / "missing.kst",
        tmp_path / "adir.kst",
        good[2],
        check=False,
    )
    err = proc.stderr.decode()
    assert proc.returncode == 4, err
    assert f"kstream: error: {tampered}: authentication failed" in err
    assert f"kstream: error: {good[1].with_name('f1.bin.kst')}: output " in err
    assert f"kstream: error: {tmp_path / 'missing.kst'}: cannot open input" in err
    assert f"kstream: error: {tmp_path / 'adir.kst'}: " in err
    assert f"kstream: error: {good[2]}: the name does not end in '.kst'" in err
    assert "5 files: 0 done, 5 failed" in err
    assert good[1].read_bytes() == b"left alone"
    assert not any(n.endswith(".kstream-partial") for n in os.listdir(tmp_path))
    assert not (tmp_path / "f0.bin").exists()  # nothing of the tampered file released


def test_the_good_files_of_a_mixed_batch_complete(tmp_path: Path, keyfile: Path) -> None:
    files = make_files(tmp_path, [1000, 2000])
    proc = kst("encrypt", "-k", keyfile, *files, tmp_path / "nope", "--suffix", ".kst", check=False)
    assert proc.returncode == 4
    assert "3 files: 2 done, 1 failed" in proc.stderr.decode()
    for path in files:
        path.unlink()
    # two names without --suffix would be IN OUT: the suffix says "many files"
    kst(
        "decrypt", "-k", keyfile, "--suffix", ".kst", *[p.with_name(p.name + ".kst") for p in files]
    )
    assert {p: p.read_bytes() for p in files} == files


def test_refusals_before_anything_runs(tmp_path: Path, keyfile: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        (tmp_path / d / "x").write_bytes(b"x")
    out = tmp_path / "out"
    out.mkdir()
    cases: list[tuple[list[Any], str]] = [
        (
            [tmp_path / "a" / "x", tmp_path / "b" / "x", "--output-dir", out],
            "would both be written to",
        ),
        ([tmp_path / "a" / "x", "-", "--suffix", ".k"], "'-' (stdin/stdout) is not accepted"),
        ([tmp_path / "a" / "x", "--suffix", ""], "--suffix must not be empty"),
        (
            [tmp_path / "a" / "x", "--output-dir", tmp_path / "a" / "x"],
            "--output-dir '" + str(tmp_path / "a" / "x") + "' exists and is not a directory",
        ),
        ([tmp_path / "a" / "x", tmp_path / "b" / "x", tmp_path / "c"], "give IN and OUT"),
        ([tmp_path / "a" / "x", "--raw", "--iv", "00" * 16], "every output would reuse"),
    ]
    for args, message in cases:
        proc = kst("encrypt", "-k", keyfile, *args, check=False)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr.decode(), (args, proc.stderr)
    assert os.listdir(out) == []
    assert sorted(os.listdir(tmp_path / "a")) == ["x"]


def test_plan_outputs_names() -> None:
    tasks, refused = plan_outputs(
        ["d/a.kst", "b.kst", "c"], encrypt=False, suffix=".kst", output_dir=None
    )
    assert [(t.src, t.dst) for t in tasks] == [("d/a.kst", "d/a"), ("b.kst", "b")]
    assert [(src, str(exc)) for src, exc in refused] == [
        ("c", "the name does not end in '.kst'; give the suffix with --suffix")
    ]
    tasks, _ = plan_outputs([".kst"], encrypt=False, suffix=".kst", output_dir=None)
    assert tasks == []  # a name that is only the suffix has nothing left
    with pytest.raises(UsageError):
        plan_outputs(["a", "./a"], encrypt=True, suffix=".kst", output_dir=None)


def test_severity_order() -> None:
    assert most_severe([]) == 0
    assert most_severe([1, 2]) == 2
    assert most_severe([4, 2, 1]) == 4
    assert most_severe([4, 3]) == 3
    assert most_severe([3, 143]) == 143 and most_severe([143, 130]) == 130
    assert SEVERITY.index(1) < SEVERITY.index(2) < SEVERITY.index(4) < SEVERITY.index(3)


def test_files_in_flight_are_bounded(
    tmp_path: Path,
    keyfile: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At most -j files at once, and open descriptors do not grow with the number of files."""
    files = make_files(tmp_path, [50_000] * 24)
    real = kstream.api.Session._file
    in_flight = 0
    peak = 0
    fds: list[int] = []
    lock = threading.Lock()

    async def counting(*args: Any, **kw: Any) -> None:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
            fds.append(len(os.listdir("/proc/self/fd")))
        try:
            await real(*args, **kw)
        finally:
            with lock:
                in_flight -= 1

    monkeypatch.setattr(kstream.api.Session, "_file", counting)
    code, _, err = run_main(
        capsys, "encrypt", "-q", "-k", keyfile, "-j", "3", "--suffix", ".kst", *files
    )
    assert code == 0, err
    assert peak == 3
    assert max(fds) - min(fds) <= 3 * 4  # a few descriptors per file in flight, no more
    assert len(list(tmp_path.glob("*.kst"))) == 24


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_new_files_and_keeps_the_finished_ones(
    tmp_path: Path, keyfile: Path, sig: int, code: int
) -> None:
    files = make_files(tmp_path, [30_000, 40_000])
    fifo = tmp_path / "slow"
    os.mkfifo(fifo)
    later = tmp_path / "later"
    later.write_bytes(b"never started")
    proc = subprocess.Popen(
        [
            *KST,
            "encrypt",
            "-k",
            str(keyfile),
            "-j",
            "1",
            "--suffix",
            ".kst",
            *map(str, files),
            str(fifo),
            str(later),
        ],
        stderr=subprocess.PIPE,
    )
    with open_fifo_writer(fifo, proc) as writer:  # once kstream opens it: f0, f1 are done
        writer.write(os.urandom(100_000))
        writer.flush()
        deadline = time.monotonic() + 30
        while not any(n.endswith(".kstream-partial") for n in os.listdir(tmp_path)):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    text = err.decode()
    assert proc.returncode == code, text
    assert "4 files: 2 done, 0 failed, 2 not done" in text
    assert not any(n.endswith(".kstream-partial") for n in os.listdir(tmp_path))
    assert not (tmp_path / "slow.kst").exists() and not (tmp_path / "later.kst").exists()
    for path in files:
        path.unlink()
    kst(
        "decrypt", "-k", keyfile, "--suffix", ".kst", *[p.with_name(p.name + ".kst") for p in files]
    )
    assert {p: p.read_bytes() for p in files} == files


@pytest.mark.kernel
def test_many_files_through_the_kernel_backend(tmp_path: Path, keyfile: Path) -> None:
    files = make_files(tmp_path, [0, 5000, 1_100_000])
    kst("encrypt", "--backend", "kernel", "-k", keyfile, "--suffix", ".kst", *files)
    for path in files:
        path.rename(path.with_name(path.name + ".orig"))
    kst(
        "decrypt",
        "--backend",
        "openssl",
        "-k",
        keyfile,
        "--suffix",
        ".kst",
        *[p.with_name(p.name + ".kst") for p in files],
    )
    for path, data in files.items():
        assert path.read_bytes() == data


def test_a_passphrase_is_derived_once_per_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files encrypted in one run share one salt (one scrypt), each with its own IV;
    decryption derives once per salt, however many files carry it."""
    import kstream.keys.passphrase

    files = make_files(tmp_path, [100, 2000, 70_000])
    phrase = tmp_path / "phrase"
    phrase.write_text("correct horse\n")
    phrase.chmod(0o600)
    real = kstream.keys.passphrase.derive
    calls: list[int] = []

    def counting(passphrase: Any, params: Any, **kw: Any) -> Any:
        calls.append(params.log2n)
        return real(passphrase, params, **kw)

    monkeypatch.setattr(kstream.keys.passphrase, "derive", counting)
    code, _, err = run_main(
        capsys,
        "encrypt",
        "-q",
        "--passphrase-file",
        phrase,
        "--work-factor",
        "12",
        "--suffix",
        ".kst",
        *files,
    )
    assert code == 0, err
    assert calls == [12]
    headers = [p.with_name(p.name + ".kst").read_bytes()[:52] for p in files]
    assert len({h[36:52] for h in headers}) == 1  # one salt for the run
    assert len({h[16:32] for h in headers}) == 3  # a fresh IV per file
    for path in files:
        path.unlink()
    calls.clear()
    code, _, err = run_main(
        capsys,
        "decrypt",
        "-q",
        "--passphrase-file",
        phrase,
        "--suffix",
        ".kst",
        *[p.with_name(p.name + ".kst") for p in files],
    )
    assert code == 0, err
    assert calls == [12]
    assert {p: p.read_bytes() for p in files} == files
    # a file from another run (another salt) costs one more derivation, not one per file
    other = tmp_path / "other"
    other.write_bytes(b"x")
    run_main(capsys, "encrypt", "-q", "--passphrase-file", phrase, "--work-factor", "12", other)
    for path in [*files, other]:
        path.unlink()
    calls.clear()
    code, _, err = run_main(
        capsys,
        "decrypt",
        "-q",
        "--passphrase-file",
        phrase,
        "--suffix",
        ".kst",
        other.with_name("other.kst"),
        *[p.with_name(p.name + ".kst") for p in files],
    )
    assert code == 0, err
    assert calls == [12, 12]  # two salts: two derivations for four files
    assert {p: p.read_bytes() for p in files} == files and other.read_bytes() == b"x"


def test_default_files_in_flight_follows_the_mean_size() -> None:
    from kstream.cli.many import FILES_IN_FLIGHT, SMALL_FILES_IN_FLIGHT, files_in_flight

    assert files_in_flight([4096] * 1000) == SMALL_FILES_IN_FLIGHT == 1
    assert files_in_flight([10 << 20] * 100) == FILES_IN_FLIGHT == 4
    assert files_in_flight([]) == FILES_IN_FLIGHT


def test_the_backend_is_resolved_once_per_run_not_per_file(
    tmp_path: Path,
    keyfile: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A kernel probe (a socket bound and keyed, /proc/crypto read) per file would cost more
    than a small file's encryption; the run resolves the backend once and each file's plan
    takes the object."""
    from kstream.backends.kernel import KernelBackend

    probes: list[object] = []
    real_probe = KernelBackend.probe

    def counting_probe(self: KernelBackend) -> Any:
        probes.append(self)
        return real_probe(self)

    monkeypatch.setattr(KernelBackend, "probe", counting_probe)
    files = make_files(tmp_path, [100, 5000, 70_000, 0, 1])
    code, _, err = run_main(capsys, "encrypt", "-k", keyfile, "--suffix", ".kst", *files)
    assert code == 0, err
    assert len(probes) == 1
    for path in files:
        path.unlink()
    code, _, err = run_main(
        capsys,
        "decrypt",
        "-k",
        keyfile,
        "--suffix",
        ".kst",
        *[p.with_name(p.name + ".kst") for p in files],
    )
    assert code == 0, err
    assert len(probes) == 2
    assert all(path.read_bytes() == data for path, data in files.items())


@pytest.mark.skipif(host_has_af_alg(), reason="this host has AF_ALG: the kernel backend works")
def test_a_backend_that_cannot_run_is_one_error_for_the_run(
    tmp_path: Path, keyfile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = make_files(tmp_path, [100, 200, 300])
    code, _, err = run_main(
        capsys, "encrypt", "--backend", "kernel", "-k", keyfile, "--suffix", ".kst", *files
    )
    assert code == 3
    assert err.count("kstream: error:") == 1 and "kernel backend is not available" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(  # no output, no partial
        [p.name for p in files] + [keyfile.name]
    )


def test_a_missing_output_dir_is_created(tmp_path: Path, keyfile: Path) -> None:
    """As zstd does: ``--output-dir new/sub`` is made, parents too."""
    files = make_files(tmp_path, [10, 20])
    kst("encrypt", "-q", "-k", keyfile, "--output-dir", tmp_path / "new" / "sub", *files)
    assert sorted(os.listdir(tmp_path / "new" / "sub")) == sorted(p.name + ".kst" for p in files)


@pytest.mark.parametrize("command", ["encrypt", "decrypt"])
def test_a_directory_as_input_is_one_clear_line(
    tmp_path: Path, keyfile: Path, command: str
) -> None:
    (tmp_path / "d").mkdir()
    hint = (
        "kstream encrypts files: give its files (with --suffix), or a tar of it "
        "('tar c DIR | kstream encrypt -k KEY -o DIR.tar.kst')"
        if command == "encrypt"
        else "give the .kst files in it"
    )
    for args, named in (
        ([tmp_path / "d", tmp_path / "out"], f"input '{tmp_path / 'd'}'"),
        ([tmp_path / "d"], f"{tmp_path / 'd'}:"),
    ):
        proc = kst(command, "-k", keyfile, *args, check=False)
        assert proc.returncode == 2
        assert proc.stderr.decode() == f"kstream: error: {named} is a directory; {hint}\n"
        assert sorted(os.listdir(tmp_path)) == ["d", "key"]
