"""``kstream bench --plot`` (:mod:`kstream.bench.plot`): a PNG when matplotlib is there, one
line of error before any measuring when it is not.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from bench.support import FAST, FakeKernelStream, run

from kstream.bench import memory, plot


def test_plot_without_matplotlib_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    code, out, err = run(capsys, *FAST, "--chunk", "1K", "--plot", str(tmp_path / "p.png"))
    assert code == 2
    assert out == ""  # refused before measuring anything
    assert err == f"kstream: error: {plot.PLOT_HINT}\n"
    assert "install kstream[plot]" in err
    assert not (tmp_path / "p.png").exists()


def test_plot_draws_a_png(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, simulated_kernel: list[FakeKernelStream]
) -> None:
    pytest.importorskip("matplotlib")
    target = tmp_path / "bench.png"
    code, out, _ = run(capsys, *FAST, "--chunk", "1K,16K", "--plot", str(target))
    assert code == 0 and f"plot written to {target}" in out
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_series_average_encrypt_and_decrypt() -> None:
    rows = [
        memory.MemoryRow("openssl", "OpenSSL 3", "update", 128, 1024, "encrypt", 10.0, 1.0),
        memory.MemoryRow("openssl", "OpenSSL 3", "update", 128, 1024, "decrypt", 20.0, 1.0),
        memory.MemoryRow(
            "kernel",
            "ctr(aes-generic)",
            "splice",
            128,
            2048,
            "encrypt",
            5.0,
            1.0,
            warning="generic",
        ),
    ]
    report = memory.MemoryReport({}, {}, [], [], rows)
    assert plot.series(report) == {
        128: {
            "openssl OpenSSL 3 (update)": [(1024, 15.0)],
            "kernel ctr(aes-generic) (splice) [generic]": [(2048, 5.0)],
        }
    }
