"""kstream.engine.plan: one backend resolution per run, and one codec that gives the same
bytes whichever driver moves them and whichever kind of cipher runs it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from reference import ctr, seal
from streams import Collect, NoInPlaceBackend, each

import kstream
import kstream.backends.select as select_module
from kstream.backends.base import Backend, CipherOptions
from kstream.backends.kernel import KernelBackend
from kstream.engine.drive import ranges_apply, run, run_ranges_plan
from kstream.engine.fdio import FdSink, FdSource
from kstream.engine.iterate import IterSource
from kstream.engine.plan import NOTHING_TO_VERIFY, Plan, check_header, make_plan
from kstream.engine.raw import check_iv, check_raw
from kstream.errors import FormatError, InvalidKey, UsageError, worded
from kstream.format import HEADER_SIZE, Header
from kstream.keys.key import Key
from kstream.segments import OpenCodec, RawCodec, SealCodec

SMALL = 4096  # segments small enough that a few KiB make many of them


# --- the codec gives the same bytes through every driver --------------------------------------


def small_plan(key: Key, iv: bytes, *, encrypt: bool, raw: bool, in_place: bool) -> Plan:
    header = None if raw else Header(suite=key.suite, iv=iv, auth_param=SMALL)
    plan = make_plan(
        encrypt=encrypt,
        key=key,
        raw_iv=iv if raw else None,
        header=header,
        backend="openssl",
        notify=print,
    )
    return plan if in_place else plan._replace(backend=NoInPlaceBackend(True))


async def through_fds(plan: Plan, tmp: Path, data: bytes) -> bytes:
    (tmp / "in").write_bytes(data)
    i = os.open(tmp / "in", os.O_RDONLY)
    o = os.open(tmp / "out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        await run(plan, FdSource(i, "in"), FdSink(o, "out"))
    finally:
        os.close(i)
        os.close(o)
    return (tmp / "out").read_bytes()


async def through_iterate(plan: Plan, tmp: Path, data: bytes) -> bytes:
    sink = Collect()
    pieces = [data[i : i + 1001] for i in range(0, len(data), 1001)]  # not whole blocks
    await run(plan, IterSource(each(pieces)), sink)
    return bytes(sink.data)


async def through_ranges(plan: Plan, tmp: Path, data: bytes) -> bytes:
    (tmp / "in").write_bytes(data)
    i = os.open(tmp / "in", os.O_RDONLY)
    o = os.open(tmp / "out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        assert await run_ranges_plan(
            plan, FdSource(i, "in"), FdSink(o, "out"), len(data), 0, jobs=3
        )
    finally:
        os.close(i)
        os.close(o)
    return (tmp / "out").read_bytes()


Driver = Callable[[Plan, Path, bytes], Any]
DRIVERS = {"fds": through_fds, "iterate": through_iterate, "ranges": through_ranges}


@pytest.mark.parametrize("in_place", [True, False], ids=["openssl", "no-update_into"])
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("size", [0, 1, SMALL - 1, SMALL, SMALL + 1, 7 * SMALL + 77])
async def test_every_driver_gives_the_same_bytes(
    tmp_path: Path, size: int, driver: str, in_place: bool
) -> None:
    """Sealed and raw output equal tests/reference.py; opening gives the plaintext back."""
    go = DRIVERS[driver]
    key, iv = Key(os.urandom(16)), os.urandom(16)
    data = os.urandom(size)
    header = Header(suite=key.suite, iv=iv, auth_param=SMALL)
    sealed = await go(
        small_plan(key, iv, encrypt=True, raw=False, in_place=in_place), tmp_path, data
    )
    assert sealed == seal(key.material(), header.encode(), data, SMALL)
    opened = small_plan(key, iv, encrypt=False, raw=False, in_place=in_place)
    if driver == "ranges":
        assert await go(opened, tmp_path, sealed) == data  # the header is skipped by ranges
    else:
        assert await go(opened, tmp_path, sealed[HEADER_SIZE:]) == data
    raw = await go(small_plan(key, iv, encrypt=True, raw=True, in_place=in_place), tmp_path, data)
    assert raw == ctr(key.material(), iv, data)


# --- the backend is resolved once per run -----------------------------------------------------


@pytest.fixture
def resolutions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every backend resolution and kernel probe in the run, by name."""
    seen: list[str] = []
    real_select = select_module.select_backend
    real_probe = KernelBackend.probe

    def counting_select(name: str = "auto", notify: Any = None, options: Any = None) -> Backend:
        seen.append(f"select {name}")
        return real_select(name, notify, options)

    def counting_probe(self: KernelBackend) -> Any:
        seen.append("probe kernel")
        return real_probe(self)

    monkeypatch.setattr(select_module, "select_backend", counting_select)
    monkeypatch.setattr(KernelBackend, "probe", counting_probe)
    return seen


@pytest.mark.parametrize("backend", ["openssl", "auto"])
@pytest.mark.parametrize("jobs", [1, 2, 4])
async def test_backend_is_resolved_once_whatever_jobs_is(
    tmp_path: Path, resolutions: list[str], backend: Any, jobs: int
) -> None:
    """Ranges open one stream each from the plan's backend object: one probe in all."""
    if backend == "auto" and KernelBackend().probe().available:
        pytest.skip("the kernel backend works here: auto would not fall back")
    resolutions.clear()
    key = Key.generate()
    notices: list[str] = []
    (tmp_path / "p").write_bytes(os.urandom(5 * 1032192 + 3))  # six default segments
    await kstream.encrypt_file(
        tmp_path / "p", tmp_path / "c", key=key, jobs=jobs, backend=backend, notify=notices.append
    )
    assert resolutions == [f"select {backend}"] + (["probe kernel"] if backend == "auto" else [])
    resolutions.clear()
    await kstream.decrypt_file(
        tmp_path / "c", tmp_path / "d", key=key, jobs=jobs, backend=backend, notify=notices.append
    )
    assert resolutions == [f"select {backend}"] + (["probe kernel"] if backend == "auto" else [])
    assert (tmp_path / "d").read_bytes() == (tmp_path / "p").read_bytes()
    # auto says once per run that it fell back, not once per range
    assert len(notices) == (2 if backend == "auto" else 0)


@pytest.mark.parametrize("jobs", [1, 3])
async def test_backend_is_resolved_once_when_ranges_hand_over(
    tmp_path: Path, resolutions: list[str], jobs: int
) -> None:
    """A file whose size fits no intact file goes to the stream driver (which names the
    problem): the plan made for the ranges is reused, not resolved a second time, so
    ``auto`` does not tell the user twice that it fell back."""
    key = Key.generate()
    (tmp_path / "p").write_bytes(os.urandom(3 * 1032192 + 3))
    await kstream.encrypt_file(tmp_path / "p", tmp_path / "c", key=key, backend="openssl")
    blob = (tmp_path / "c").read_bytes()
    (tmp_path / "cut").write_bytes(blob[: HEADER_SIZE + 2 * (1032192 + 20)])
    resolutions.clear()
    with pytest.raises(
        FormatError, match="^file is truncated: it ends after segment 1 without the final segment$"
    ):
        await kstream.decrypt_file(
            tmp_path / "cut", tmp_path / "d", key=key, jobs=jobs, backend="openssl"
        )
    assert resolutions == ["select openssl"]
    assert not (tmp_path / "d").exists()


async def test_pipe_and_stream_runs_resolve_once(resolutions: list[str]) -> None:
    key = Key.generate()
    out: list[bytes] = [
        bytes(p)
        async for p in kstream.encrypt_stream(each([b"abc"] * 1000), key=key, backend="openssl")
    ]
    back = [p async for p in kstream.decrypt_stream(each(out), key=key, backend="openssl")]
    assert b"".join(back) == b"abc" * 1000
    assert resolutions == ["select openssl", "select openssl"]


# --- the plan's own checks -------------------------------------------------------------------


def test_check_iv() -> None:
    assert check_iv(bytes(16), raw=True) == bytes(16)
    assert check_iv(None, raw=False) is None
    with pytest.raises(
        UsageError, match=r"raw=True needs iv= \(16 bytes\): raw output has no header"
    ):
        check_iv(None, raw=True)
    with pytest.raises(UsageError, match="the IV must be 16 bytes, got 8"):
        check_iv(bytes(8), raw=True)
    with pytest.raises(UsageError, match="iv= is only allowed with raw=True; kstream files get"):
        check_iv(bytes(16), raw=False)


def test_check_raw() -> None:
    check_raw(False, keyed=False)
    check_raw(True, keyed=True)
    with pytest.raises(UsageError, match="raw=True takes a key: raw output has no header"):
        check_raw(True, keyed=False)


def test_a_plan_cannot_be_changed_once_built() -> None:
    plan = make_plan(encrypt=True, key=Key.generate(), raw_iv=None, backend="openssl", notify=print)
    with pytest.raises(AttributeError):
        plan.verify = True  # type: ignore[misc]
    assert plan.mac is not None and plan.header is not None


def test_check_header() -> None:
    key = Key(bytes(16))
    header = Header(suite=key.suite, iv=bytes(16))
    assert check_header(header.encode(), key) == header
    with pytest.raises(FormatError, match="^input is empty: not a kstream file$"):
        check_header(b"", key)
    with pytest.raises(InvalidKey, match="the key is AES-256 .* encrypted with AES-128"):
        check_header(header.encode(), Key(bytes(32)))


def test_make_plan_codecs_and_counter_offsets() -> None:
    """Each codec gets its own stream, and a stream for segment k starts k*S bytes into the
    keystream (what lets ranges run apart)."""
    key, iv = Key(os.urandom(16)), os.urandom(16)
    header = Header(suite=key.suite, iv=iv, auth_param=SMALL)
    seal_plan = make_plan(
        encrypt=True, key=key, raw_iv=None, header=header, backend="openssl", notify=print
    )
    assert isinstance(seal_plan.codec(), SealCodec) and seal_plan.prefix == header.encode()
    open_plan = make_plan(
        encrypt=False, key=key, raw_iv=None, header=header, backend="openssl", notify=print
    )
    assert isinstance(open_plan.codec(), OpenCodec) and open_plan.prefix == b""
    raw_plan = make_plan(encrypt=True, key=key, raw_iv=iv, backend="openssl", notify=print)
    assert isinstance(raw_plan.codec(), RawCodec) and raw_plan.prefix == b""
    codec = seal_plan.codec(3)
    assert codec.index == 3
    data = os.urandom(4 * SMALL)
    assert (
        seal_plan.cipher(3).update(data[3 * SMALL :]) == ctr(key.material(), iv, data)[3 * SMALL :]
    )
    assert (
        open_plan.cipher_at(SMALL + 48).update(data[SMALL + 48 :])
        == (ctr(key.material(), iv, data)[SMALL + 48 :])
    )
    with pytest.raises(ValueError, match="a whole AES block, not at byte 7"):
        open_plan.cipher_at(7)
    assert open_plan.segment_check().body_start == header.size
    with pytest.raises(ValueError, match="only the plan to decrypt a kstream file"):
        seal_plan.segment_check()
    with pytest.raises(ValueError, match="decrypting a kstream file needs its header"):
        make_plan(encrypt=False, key=key, raw_iv=None, backend="openssl", notify=print)
    fresh = make_plan(encrypt=True, key=key, raw_iv=None, backend="openssl", notify=print)
    again = make_plan(encrypt=True, key=key, raw_iv=None, backend="openssl", notify=print)
    assert fresh.iv != again.iv  # a fresh random IV per file


def test_verify_with_openssl_is_dropped_with_a_notice() -> None:
    notices: list[str] = []
    plan = make_plan(
        encrypt=True,
        key=Key(bytes(16)),
        raw_iv=None,
        backend="openssl",
        verify=True,
        notify=notices.append,
    )
    assert not plan.verify and notices == [worded(NOTHING_TO_VERIFY)]
    assert notices == ["verify=True has nothing to check: openssl is the reference"]


def test_ranges_apply_to_regular_files_without_explicit_transfer(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    r, w = os.pipe()
    try:
        assert ranges_apply(FdSource(fd, "f"), None)
        assert ranges_apply(FdSource(fd, "f"), CipherOptions(transfer="sendmsg"))
        assert not ranges_apply(FdSource(fd, "f"), CipherOptions(transfer="splice"))
        assert not ranges_apply(FdSource(r, "pipe"), None)
    finally:
        for x in (fd, r, w):
            os.close(x)
