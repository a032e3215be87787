"""``kstream bench --files`` (:mod:`kstream.bench.files`): one small real run against
``openssl enc`` and ``cp``, its report, and its refusals.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from bench.support import AGE, TINK

from kstream.bench import files


@pytest.fixture(scope="module")
def files_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    where = tmp_path_factory.mktemp("bench-files")
    report = files.run_files(
        size=4 << 20,
        directory=str(where),
        repeat=2,
        warmup=0,
        rss_size=8 << 20,
        backends=["openssl"],
        many=False,
    )
    return where, report


def test_files_report_structure(files_report: tuple[Path, Any]) -> None:
    where, report = files_report
    assert list(where.iterdir()) == []  # everything generated was removed
    doc = json.loads(json.dumps(report.to_json()))
    assert doc["mode"] == "files" and doc["settings"]["size"] == 4 << 20
    entries = {e["id"]: e for e in doc["entries"]}
    assert set(entries) == {
        "cp",
        "cmd-openssl-enc",
        "cmd-openssl-dec",
        "cmd-openssl-pipe",
        "cmd-cat-pipe",
        *(
            f"kstream-openssl-{name}"
            for name in (
                "raw-enc",
                "raw-dec",
                "enc",
                "dec",
                "stdout",
                "pipe",
                "api-file",
                "api-stream",
                "api-stream-asyncio",
            )
        ),
        *(["age-enc", "age-dec"] if AGE else []),
        *(["tink-api-file"] if TINK else []),
    }
    for entry in entries.values():
        assert len(entry["times"]) == 2 and entry["median_s"] > 0 and entry["mb_s"] > 0
    for name in ("raw-enc", "raw-dec", "enc", "dec", "stdout", "pipe"):
        entry = entries[f"kstream-openssl-{name}"]
        assert entry["ratio"] > 0 and entry["baseline"].startswith("cmd-openssl")
        assert 0 < entry["peak_rss_mib"] < 1024
    assert entries["kstream-openssl-api-file"]["baseline"] == "kstream-openssl-enc"
    assert entries["kstream-openssl-api-file"]["compare"] == "throughput"
    assert entries["kstream-openssl-api-stream"]["baseline"] == "kstream-openssl-stdout"
    # The default-loop run is shown for information; only the run on the CLI's loop is judged.
    assert entries["kstream-openssl-api-stream-asyncio"]["ratio"] > 0
    assert entries["kstream-openssl-api-file"]["peak_rss_mib"] is None
    goals = {g["entry"]: g for g in doc["goals"]}
    # 4 MiB is under the 1 GiB the time goals are calibrated for: ratios without a verdict;
    # peak RSS is judged at any size.
    assert doc["settings"]["goals_judged"] is False
    assert {g["verdict"] for g in goals.values() if g["entry"] != "rss"} == {"info"}
    assert goals["rss"]["verdict"] in ("PASS", "MISS")
    assert "kstream-openssl-api-stream-asyncio" not in goals
    # tmpfs measures the CPU work (the ratios); a disk is writeback-bound (<= 1.05x).
    on_disk = doc["settings"]["filesystem"] not in ("tmpfs", "ramfs")
    assert doc["settings"]["on_disk"] == on_disk
    assert goals["kstream-openssl-raw-enc"]["goal"] == ("<= 1.05x" if on_disk else "<= 0.70x")
    assert goals["kstream-openssl-enc"]["goal"] == ("<= 1.05x" if on_disk else "<= 0.80x")
    assert goals["kstream-openssl-pipe"]["goal"] == ("<= 1.05x" if on_disk else "<= 0.85x")
    assert goals["kstream-openssl-api-file"]["goal"] == ">= 0.90x"
    assert goals["rss"]["goal"] == "<= 64 MiB" and goals["rss"]["ratio"] > 0
    assert [r["backend"] for r in doc["rss_runs"]] == ["openssl", "openssl"]
    assert all(r["size"] == 8 << 20 and r["rss_mib"] > 0 for r in doc["rss_runs"])
    # kstream against each peer installed here, from the times of the same rounds.
    rows = {(p["entry"], p["peer"]): p for p in doc["peers"]}
    expected = [("enc", "age-enc"), ("dec", "age-dec")] if AGE else []
    expected += [("api-file", "tink-api-file")] if TINK else []
    assert sorted(rows) == sorted((f"kstream-openssl-{k}", p) for k, p in expected)
    for (mine, theirs), peer in rows.items():
        pairs = zip(entries[mine]["times"], entries[theirs]["times"], strict=True)
        # (the JSON times are rounded to 0.1 ms)
        assert peer["ratio"] == pytest.approx(sum(k / t for k, t in pairs) / 2, rel=0.02)
    assert len(doc["peers_missing"]) == (not AGE) + (not TINK)


def test_files_report_text(files_report: tuple[Path, Any]) -> None:
    _, report = files_report
    text = files.format_files_report(report)
    assert "4 MiB generated file in" in text
    for label in (
        "cp",
        "openssl enc -aes-128-ctr",
        "kstream encrypt --raw (openssl)",
        "kstream decrypt (openssl)",
        "cat | kstream encrypt - - | cat (openssl)",
        "API encrypt_file (openssl)",
        "API encrypt_stream, aiofiles (openssl)",
        "API encrypt_stream, aiofiles, asyncio.run (openssl)",
    ):
        assert f"\n{label} " in text
    goal_lines = [line for line in text.splitlines() if line.startswith(("  PASS", "  MISS"))]
    assert len(goal_lines) == 1 + 2  # RSS of the runs, the two sparse runs: no time goals
    assert all("goal " in line and "peak RSS" in line for line in goal_lines)
    info = [line for line in text.splitlines() if line.startswith("  info")]
    assert len(info) == 7 and all("goal " in line for line in info)
    # Right under the table: why there is no verdict.
    lines = text.splitlines()
    note = lines.index(
        "(the time goals are calibrated for files of 1 GiB or more: at 4 MiB "
        "start-up dominates, so the ratios below get no PASS/MISS)"
    )
    last = (
        "Tink streaming AEAD, AES128_GCM_HKDF_1MB"
        if TINK
        else "age -d"
        if AGE
        else "API encrypt_stream, aiofiles, asyncio.run (openssl)"
    )
    assert lines[note - 1].startswith(f"{last} ")
    head = lines.index(
        "peers (kstream's time / the peer's in the same round, lower is "
        "better; medians; information, no goal):"
    )
    assert len(lines[head + 1 :]) == 2 * AGE + TINK + (not AGE) + (not TINK)
    if AGE:
        assert " kstream encrypt (openssl) vs age -e (X25519 recipient)" in lines[head + 1]
    if TINK:
        assert lines[-1].endswith(
            ("API encrypt_file (openssl) vs Tink streaming AEAD, AES128_GCM_HKDF_1MB", ")")
        )


def _entry(
    entry_id: str, times: list[float], baseline: str | None = None, backend: str | None = "openssl"
) -> files.Entry:
    entry = files.Entry(entry_id, entry_id, lambda out, rss: files.Sample(0.0), backend, baseline)
    entry.times = times
    return entry


@pytest.mark.parametrize(
    ("size", "verdicts"),
    [
        (1 << 30, ["PASS", "MISS", "info"]),  # 1 GiB: judged (the kernel's only ever as info)
        ((1 << 30) - 1, ["info", "info", "info"]),  # under it: start-up dominates, not judged
        (64 << 20, ["info", "info", "info"]),
    ],
)
def test_time_goals_are_judged_from_1_gib(size: int, verdicts: list[str]) -> None:
    entries = [
        _entry("cmd-openssl-enc", [1.0, 1.0], backend=None),
        _entry("kstream-openssl-raw-enc", [0.5, 0.6], "cmd-openssl-enc"),  # 0.55 <= 0.70
        _entry("kstream-openssl-enc", [0.9, 0.9], "cmd-openssl-enc"),  # 0.90 > 0.80
        _entry("kstream-kernel-enc", [0.5, 0.5], "cmd-openssl-enc", backend="kernel"),
    ]
    entries[1].is_kstream = True
    entries[1].rss_kib = [200 << 10]  # 200 MiB: over the limit at any size
    goals = files._goals(entries, on_disk=False, size=size)
    assert [(g["entry"], g["verdict"]) for g in goals] == [
        ("kstream-openssl-raw-enc", verdicts[0]),
        ("kstream-openssl-enc", verdicts[1]),
        ("kstream-kernel-enc", verdicts[2]),
        ("rss", "MISS"),
    ]
    assert [g["ratio"] for g in goals[:3]] == [0.55, 0.9, 0.5]


def test_files_refuses_a_directory_without_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kstream.errors import UsageError

    class Tiny:
        f_bavail, f_frsize = 1, 4096

    monkeypatch.setattr(files.os, "statvfs", lambda _: Tiny())
    with pytest.raises(UsageError, match="free"):
        files.run_files(size=1 << 30, directory=str(tmp_path))
    assert list(tmp_path.iterdir()) == []
