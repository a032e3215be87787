"""The ``kstream bench`` options (:mod:`kstream.bench.cli`): usage errors, and registering
on the kstream command line.
"""

from __future__ import annotations

import argparse

import pytest
from bench.support import run

from kstream.bench import cli as bench_cli
from kstream.bench import units


def test_plot_is_refused_with_files(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--files", "--plot", "x.png")
    assert code == 2 and out == "" and "does not apply to --files" in err


def test_bad_options_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["--key-bits", "512"],
        ["--chunk", "1Q"],
        ["--seconds", "0"],
        ["--repeat", "0"],
        ["--transfer", "carrier-pigeon"],
    ):
        with pytest.raises(SystemExit) as exc:
            bench_cli.main(argv)
        assert exc.value.code == 2
    capsys.readouterr()


def test_registers_on_a_cli_parser() -> None:
    """``add_bench_parser`` plugs into a parser the way kstream.cli builds its subcommands."""
    parser = argparse.ArgumentParser(prog="kstream")
    sub = parser.add_subparsers(dest="command")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    bench_cli.add_bench_parser(sub, common)
    args = parser.parse_args(["bench", "--debug", "--files", "--size", "4M"])
    assert args.command == "bench" and args.debug and args.files and args.size == 4 << 20
    assert args.dir is None and args.repeat == units.DEFAULT_REPEAT and args.warmup == 1
    args = parser.parse_args(["bench"])
    assert not args.files and args.seconds is None and args.plot is None
