"""``.ci/goals.py``: the project's goals, judged on a canned ``kstream bench --files --json``."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).parents[2] / ".ci" / "goals.py"


@pytest.fixture(scope="module")
def goals() -> ModuleType:
    spec = importlib.util.spec_from_file_location("goals", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _entry(entry_id: str, ratio: float | None, baseline: str | None = None, **more: Any) -> Any:
    return {
        "id": entry_id,
        "label": entry_id,
        "baseline": baseline,
        "ratio": ratio,
        "ratio_min": ratio,
        "ratio_max": ratio,
        "peak_rss_mib": None,
        **more,
    }


#: A 1 GiB run on tmpfs with both backends, age, and the start-up rows.
DOC: dict[str, Any] = {
    "settings": {
        "size": 1 << 30,
        "on_disk": False,
        "dir": "/dev/shm",
        "filesystem": "tmpfs",
        "repeat": 5,
        "backends": ["openssl", "kernel"],
    },
    "entries": [
        _entry("cmd-openssl-enc", None),
        _entry("kstream-openssl-raw-enc", 0.69, "cmd-openssl-enc", peak_rss_mib=40.0),
        _entry("kstream-openssl-enc", 0.81, "cmd-openssl-enc", peak_rss_mib=70.5),
        _entry("kstream-openssl-api-file", 0.95, "kstream-openssl-enc"),
        _entry("kstream-kernel-enc", 2.0, "cmd-openssl-enc", peak_rss_mib=30.0),
    ],
    "rss_runs": [{"label": "sparse 10 GiB", "rss_mib": 38.0}],
    "many": [
        {"files": 1000, "file_size": 4096, "id": "openssl-loop", "median_s": 11.0},
        {
            "set": "1000 files of 4 KiB",
            "files": 1000,
            "file_size": 4096,
            "id": "kstream",
            "vs": "openssl-loop",
            "baseline": "shell loop: openssl",
            "ratio": 0.2,
            "ratio_min": 0.18,
            "ratio_max": 0.22,
        },
        {
            "set": "100 files of 10 MiB",
            "files": 100,
            "file_size": 10 << 20,
            "id": "kstream",
            "vs": "openssl-loop",
            "baseline": "shell loop: openssl",
            "ratio": 0.61,
        },
    ],
    "startup": {
        "install": "a clean venv",
        "notes": [],
        "rows": [
            {"id": "python", "label": "python -c pass", "median_s": 0.01},
            {"id": "version", "label": "kstream --version", "ratio": 1.3},
            {"id": "floor", "label": "python -c: cryptography", "ratio": 3.2},
            {"id": "one-small", "label": "kstream encrypt, one 4 KiB file", "ratio": 3.51},
        ],
    },
}


def _verdicts(goals: ModuleType, doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(v["verdict"], v["goal"], v["what"].split(" vs ")[0]) for v in goals.judge(doc)]


def test_each_goal_is_judged_on_its_ratio(goals: ModuleType) -> None:
    assert _verdicts(goals, DOC) == [
        ("PASS", "<= 0.70x", "kstream-openssl-raw-enc"),
        ("MISS", "<= 0.80x", "kstream-openssl-enc"),
        ("PASS", ">= 0.90x", "kstream-openssl-api-file"),
        ("info", "<= 0.80x", "kstream-kernel-enc"),  # the kernel's ratios are never judged
        ("MISS", "<= 64 MiB", "peak RSS of any kstream process"),  # 70.5 MiB
        ("PASS", "<= 64 MiB", "peak RSS, sparse 10 GiB"),
        ("PASS", "<= 0.35x", "1000 files of 4 KiB: kstream"),
        ("----", "<= 0.50x", "1000 files of 4 KiB against the age-loop: not measured"),
        ("MISS", "<= 0.60x", "100 files of 10 MiB: kstream"),
        ("PASS", "<= 1.30x", "kstream --version"),  # at the limit: met
        ("MISS", "<= 3.50x", "kstream encrypt, one 4 KiB file"),
    ]


def test_small_files_and_disks_change_the_time_goals(goals: ModuleType) -> None:
    small = copy.deepcopy(DOC)
    small["settings"]["size"] = (1 << 30) - 1  # start-up dominates: the time goals are info
    verdicts = _verdicts(goals, small)
    assert [v[0] for v in verdicts[:4]] == ["info"] * 4
    assert verdicts[4:] == _verdicts(goals, DOC)[4:]  # memory, many files, start-up: judged
    disk = copy.deepcopy(DOC)
    disk["settings"]["on_disk"] = True  # writeback sets the pace: every time goal is 1.05x
    assert [v[:2] for v in _verdicts(goals, disk)[:3]] == [
        ("PASS", "<= 1.05x"),
        ("PASS", "<= 1.05x"),
        ("PASS", ">= 0.90x"),
    ]


def test_the_exit_status_gates_only_when_strict(
    goals: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "bench.json"
    saved.write_text(json.dumps(DOC))
    assert goals.main(["--json", str(saved)]) == 0
    out = capsys.readouterr().out
    assert (
        "  MISS     3.510x  goal <= 3.50x   kstream encrypt, one 4 KiB file vs python -c pass; "
        "cryptography alone: 3.20x\n"
    ) in out
    assert "(start-up measured in a clean venv)" in out
    assert out.endswith("5 PASS, 4 MISS, 1 info\n")
    assert goals.main(["--json", str(saved), "--strict"]) == 1
    met = copy.deepcopy(DOC)
    met["entries"] = met["entries"][:2]
    met["many"], met["startup"] = [], {}
    saved.write_text(json.dumps(met))
    assert goals.main(["--json", str(saved), "--strict"]) == 0
    assert "start-up (one-small): not measured" in capsys.readouterr().out
