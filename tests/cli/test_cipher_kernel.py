"""End to end with the kernel backend (inside UML when the host has no AF_ALG): the CLI,
the pipelines and parallel ranges give byte-identical results to the OpenSSL backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from reference import ctr
from streams import corrupt_kernel_output

import kstream
from kstream.errors import IntegrityError

pytestmark = pytest.mark.kernel
KST = [sys.executable, "-m", "kstream"]
IV = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"
SIZE = 2 * 1032192 + 4099  # three segments, the last one partial


def kst(
    *args: object, input: bytes | None = None, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run([*KST, *map(str, args)], input=input, capture_output=True, timeout=300)
    if check and proc.returncode:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr.decode()}")
    return proc


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli-kernel")
    (d / "p").write_bytes(os.urandom(SIZE))
    for bits in (128, 192, 256):
        kstream.Key.generate(bits).save(d / f"k{bits}")
    return d


@pytest.mark.parametrize("bits", [128, 192, 256])
def test_raw_kernel_equals_openssl_for_files_pipes_and_jobs(files: Path, bits: int) -> None:
    key = files / f"k{bits}"
    want = ctr(bytes.fromhex(key.read_text()), bytes.fromhex(IV), (files / "p").read_bytes())
    for name, extra in (
        ("j1", ["-j", 1]),
        ("j2", ["-j", 2]),
        ("sendfile", ["--transfer", "sendfile"]),
    ):
        out = files / f"raw{bits}-{name}"
        kst(
            "encrypt",
            "--backend",
            "kernel",
            "--raw",
            "--iv",
            IV,
            "-k",
            key,
            *extra,
            files / "p",
            out,
        )
        assert out.read_bytes() == want, name
    piped = kst(
        "encrypt",
        "--backend",
        "kernel",
        "--raw",
        "--iv",
        IV,
        "-k",
        key,
        "-",
        "-",
        input=(files / "p").read_bytes(),
    ).stdout
    assert piped == want


@pytest.mark.parametrize("jobs", [1, 2])
def test_authenticated_files_cross_decrypt(files: Path, jobs: int) -> None:
    key = files / "k256"
    plain = (files / "p").read_bytes()
    kst("encrypt", "--backend", "kernel", "-j", jobs, "-k", key, files / "p", files / "ck")
    kst("encrypt", "--backend", "openssl", "-k", key, files / "p", files / "co")
    kst("decrypt", "--backend", "openssl", "-f", "-k", key, files / "ck", files / "d1")
    kst("decrypt", "--backend", "kernel", "-f", "-j", jobs, "-k", key, files / "co", files / "d2")
    assert (files / "d1").read_bytes() == plain == (files / "d2").read_bytes()
    piped = kst(
        "decrypt", "--backend", "kernel", "-k", key, "-", "-", input=(files / "ck").read_bytes()
    ).stdout
    assert piped == plain
    for f in ("ck", "co", "d1", "d2"):
        (files / f).unlink()


def test_auto_uses_the_kernel_without_a_notice(files: Path) -> None:
    proc = kst("encrypt", "-k", files / "k128", files / "p", files / "auto")
    assert proc.stderr == b""
    (files / "auto").unlink()


def test_verify_passes_and_names_the_driver_on_mismatch(
    files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kst(
        "encrypt", "--backend", "kernel", "--verify", "-k", files / "k128", files / "p", files / "v"
    )
    kst("decrypt", "--backend", "openssl", "-k", files / "k128", files / "v", files / "vd")
    assert (files / "vd").read_bytes() == (files / "p").read_bytes()

    corrupt_kernel_output(monkeypatch)
    key = kstream.Key.from_file(files / "k128")
    # ctr(aes-generic) in UML, ctr-aes-aesni-avx and the like with AES-NI
    with pytest.raises(IntegrityError, match=r"kernel ctr[-(]\S* disagrees .* offset 100$"):
        import asyncio

        asyncio.run(
            kstream.encrypt_file(
                files / "p", files / "bad", key=key, backend="kernel", verify=True, jobs=1
            )
        )
    assert not (files / "bad").exists()
    assert not [n for n in os.listdir(files) if n.endswith(".kstream-partial")]


def test_unknown_driver_and_selftest_and_backends(files: Path) -> None:
    proc = kst(
        "encrypt",
        "--backend",
        "kernel",
        "--driver",
        "ctr-aes-nonexistent",
        "-k",
        files / "k128",
        files / "p",
        files / "x",
        check=False,
    )
    err = proc.stderr.decode()
    assert proc.returncode in (2, 3) and err.startswith("kstream: error: ")
    assert "ctr-aes-nonexistent" in err and "Traceback" not in err
    assert not (files / "x").exists()
    report = json.loads(kst("backends", "--json").stdout)
    assert report["auto"] == "kernel"
    selftest = kst("selftest").stdout.decode()
    assert "kernel" in selftest and "failed" not in selftest.splitlines()[-1].split("(")[0]
    assert ", 0 failed" in selftest


@pytest.mark.parametrize("bits", [128, 256])
def test_both_backends_write_identical_authenticated_files(bits: int) -> None:
    import asyncio

    from streams import Collect, encrypt_to, one

    from kstream.engine.iterate import IterSource

    key = kstream.Key.generate(bits)
    data = os.urandom(SIZE)
    iv = os.urandom(16)

    outputs = []
    for backend in ("kernel", "openssl"):
        sink = Collect()
        asyncio.run(encrypt_to(IterSource(one(data)), sink, key=key, header_iv=iv, backend=backend))
        outputs.append(bytes(sink.data))
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) == 32 + SIZE + 3 * 20
