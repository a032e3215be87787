"""``kstream bench --files`` (:mod:`kstream.bench.files`): one small real run against
``openssl enc`` and ``cp``, its report, and its refusals.
"""

from __future__ import annotations

import json
import os
import re
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
        startup=False,
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
    # The same stream program under asyncio.run, against the same command-line run.
    assert entries["kstream-openssl-api-stream-asyncio"]["ratio"] > 0
    assert entries["kstream-openssl-api-file"]["peak_rss_mib"] is None
    # Ratios only: the goals and their verdicts are the developer script's (.ci/goals.py).
    assert "goals" not in doc and "goals_judged" not in doc["settings"]
    for name in ("raw-enc", "enc", "pipe", "api-file"):
        entry = entries[f"kstream-openssl-{name}"]
        assert entry["ratio_min"] <= entry["ratio"] <= entry["ratio_max"]
    on_disk = doc["settings"]["filesystem"] not in ("tmpfs", "ramfs")
    assert doc["settings"]["on_disk"] == on_disk
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
    assert not re.search(r"\b(PASS|MISS|goals?|info)\b", text)  # the goals: .ci/goals.py
    lines = text.splitlines()
    # Under the table: what the ratios are, then the two sparse runs' peak RSS.
    note = next(i for i, line in enumerate(lines) if line.startswith("(ratio: the time / "))
    assert [line.split(" MiB  ")[1][:10] for line in lines[note + 1 : note + 3]] == [
        "peak RSS, "
    ] * 2
    raw = next(line for line in lines if line.startswith("kstream encrypt --raw (openssl) "))
    row = next(e for e in report.entries if e["id"] == "kstream-openssl-raw-enc")
    assert f"{row['ratio']:.3f}x" in raw and "time of openssl enc -aes-128-ctr" in raw
    last = (
        "Tink streaming AEAD, AES128_GCM_HKDF_1MB"
        if TINK
        else "age -d"
        if AGE
        else "API encrypt_stream, aiofiles, asyncio.run (openssl)"
    )
    assert lines[note - 1].startswith(f"{last} ")
    head = lines.index(
        "peers (kstream's time / the peer's in the same round, lower is better; medians):"
    )
    assert len(lines[head + 1 :]) == 2 * AGE + TINK + (not AGE) + (not TINK)
    if AGE:
        assert " kstream encrypt (openssl) vs age -e (X25519 recipient)" in lines[head + 1]
    if TINK:
        assert lines[-1].endswith(
            ("API encrypt_file (openssl) vs Tink streaming AEAD, AES128_GCM_HKDF_1MB", ")")
        )


def test_files_refuses_a_directory_without_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kstream.errors import UsageError

    class Tiny:
        f_bavail, f_frsize = 1, 4096

    monkeypatch.setattr(os, "statvfs", lambda _: Tiny())
    with pytest.raises(UsageError, match="free"):
        files.run_files(size=1 << 30, directory=str(tmp_path))
    assert list(tmp_path.iterdir()) == []
