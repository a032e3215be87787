"""Sizes as ``kstream bench`` reads them (:mod:`kstream.bench.units`)."""

from __future__ import annotations

import argparse

import pytest

from kstream.bench import units


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("4096", 4096),
        ("1K", 1024),
        ("63K", 64512),
        ("1M", 1 << 20),
        ("1G", 1 << 30),
        ("10GiB", 10 << 30),
        ("1.5k", 1536),
        ("2mb", 2 << 20),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert units.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "abc", "1X", "0", "-5"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        units.parse_size(text)
