"""``python -m kstream.bench.seek`` runs end to end on small files (the numbers it prints
are for a developer to read; here only that every row is measured)."""

from __future__ import annotations

import pytest

from kstream.bench import seek


def test_every_ratio_is_measured(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pyarrow", reason="the Parquet row needs pyarrow")
    assert seek.main(["--size", "8", "--reads", "50", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    for row in ("random:", "sequential:", "memory:", "parquet:", "zip:"):
        assert row in out
    assert "segments read and checked per read: " in out


def test_without_parquet(capsys: pytest.CaptureFixture[str]) -> None:
    assert seek.main(["--size", "4", "--reads", "10", "--repeat", "1", "--no-parquet"]) == 0
    assert "parquet:" not in capsys.readouterr().out
