"""The reading end: ``pread_parts`` fills parts one after another, from a path or from a
file object, short only where the file ends."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from kstream.fileobj.ends import Input, ObjectInput, PathInput, _after


def parts(*sizes: int) -> list[memoryview]:
    return [memoryview(bytearray(n)) for n in sizes]


@pytest.mark.parametrize("kind", ["path", "object"])
def test_parts_are_filled_in_order_and_short_only_at_the_end(kind: str, tmp_path: Path) -> None:
    data = os.urandom(1000)
    (tmp_path / "f").write_bytes(data)
    source: Input = PathInput(tmp_path / "f") if kind == "path" else ObjectInput(io.BytesIO(data))
    views = parts(4, 0, 300, 16)
    assert source.pread_parts(100, views) == 320
    assert b"".join(bytes(v) for v in views) == data[100:420]
    views = parts(4, 50, 16)
    assert source.pread_parts(960, views) == 40  # the file ends inside the second part
    assert bytes(views[0]) == data[960:964] and bytes(views[1][:36]) == data[964:]
    assert source.pread_parts(1000, parts(4)) == 0
    source.close()


def test_after_drops_what_a_short_read_filled() -> None:
    a, b, c = parts(4, 10, 16)
    assert [len(v) for v in _after([a, b, c], 3)] == [1, 10, 16]
    assert [len(v) for v in _after([a, b, c], 4)] == [10, 16]
    assert [len(v) for v in _after([a, b, c], 9)] == [5, 16]
    assert _after([a, b, c], 30) == []
