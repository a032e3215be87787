"""kstream's parsers (kstream.cli.parsing): options between positionals in every command,
usage errors on one line, help as wide as argparse makes it."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import screen
from clirun import fails, kst, one_error, run_main

from kstream.cli import main as cli
from kstream.cli.completion import walk
from kstream.cli.parsing import Parser, parse_intermixed

#: (command line, what the Namespace must hold): each command with an option placed between
#: its positionals, or between the command name and its positional where it has one.
CASES: list[tuple[list[str], dict[str, Any]]] = [
    (["encrypt", "IN", "-k", "KEY", "OUT"], {"paths": ["IN", "OUT"], "key_file": "KEY"}),
    (
        ["encrypt", "-f", "IN", "--backend", "openssl", "OUT"],
        {"paths": ["IN", "OUT"], "force": True, "backend": "openssl"},
    ),
    (
        ["encrypt", "a", "--suffix", ".x", "b", "-j", "2", "c"],
        {"paths": ["a", "b", "c"], "suffix": ".x", "jobs": 2},
    ),
    (
        ["decrypt", "IN", "--key-fd", "3", "--no-progress", "OUT", "-q"],
        {"paths": ["IN", "OUT"], "key_fd": 3, "progress": False, "quiet": True},
    ),
    (
        ["decrypt", "IN", "--raw", "--iv", "00" * 16, "OUT"],
        {"paths": ["IN", "OUT"], "raw": True, "iv": "00" * 16},
    ),
    (["keygen", "--bits", "128", "OUT"], {"output": "OUT", "bits": 128}),
    (["inspect", "--json", "FILE"], {"file": "FILE", "json": True}),
    (["backends", "--json"], {"json": True}),
    (["selftest", "--json"], {"json": True}),
    (["demo", "--debug"], {"debug": True}),
    (
        ["key", "add", "NAME", "--type", "user", "FILE"],
        {"key_command": "add", "name": "NAME", "keyfile": "FILE", "key_type": "user"},
    ),
    (
        ["key", "add", "NAME", "-q", "--keyring", "session"],
        {"name": "NAME", "keyfile": "-", "quiet": True, "keyring": "session"},
    ),
    (
        ["key", "gen", "--bits", "128", "NAME", "--save", "F"],
        {"key_command": "gen", "name": "NAME", "bits": 128, "save": "F"},
    ),
    (["key", "load", "--blob", "B", "NAME"], {"key_command": "load", "name": "NAME", "blob": "B"}),
    (["key", "list", "--json"], {"key_command": "list", "json": True}),
    (["key", "rm", "--debug", "NAME"], {"key_command": "rm", "name": "NAME", "debug": True}),
    (["bench", "--files", "--size", "4M"], {"files": True, "size": 4 << 20}),
    (["completion", "--debug", "zsh"], {"shell": "zsh", "debug": True}),
    (["man", "--debug"], {"debug": True}),
]


def leaf_commands(parser: argparse.ArgumentParser) -> set[str]:
    """'encrypt', 'key add'...: the commands that take arguments of their own."""
    names = set()
    for each in walk(parser):
        if not any(isinstance(a, argparse._SubParsersAction) for a in each._actions):
            names.add(each.prog.removeprefix("kstream").strip())
    return names - {""}


def test_every_command_has_a_case() -> None:
    covered = {" ".join(argv[:2]) if argv[0] == "key" else argv[0] for argv, _ in CASES}
    assert covered == leaf_commands(cli.build_parser()[0])


@pytest.mark.parametrize(("argv", "expected"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_options_between_positionals(argv: list[str], expected: dict[str, Any]) -> None:
    args = cli.build_parser()[0].parse_args(argv)
    assert args.command == argv[0]
    assert {k: getattr(args, k) for k in expected} == expected


@pytest.mark.parametrize(
    "argv",
    [
        ["--debug", "encrypt", "a", "b"],
        ["encrypt", "a", "--debug", "b"],
        ["encrypt", "a", "b", "--debug"],
        ["key", "--debug", "add", "N"],
        ["key", "add", "N", "--debug", "F"],
    ],
)
def test_debug_before_or_after_the_command_name(argv: list[str]) -> None:
    args = cli.build_parser()[0].parse_args(argv)
    assert args.debug is True
    assert getattr(args, "paths", None) in (None, ["a", "b"])


def test_without_debug_it_is_false() -> None:
    assert cli.build_parser()[0].parse_args(["encrypt", "a", "b"]).debug is False


@pytest.mark.parametrize(
    ("argv", "paths"),
    [
        (["encrypt", "-k", "K", "--", "-x", "out"], ["-x", "out"]),  # 3.11's own drops "-x"
        (["encrypt", "--", "-x", "-k"], ["-x", "-k"]),
        (["encrypt", "-k", "K", "in", "--", "-x"], ["in", "-x"]),
        (["encrypt", "in", "--", "--", "-f"], ["in", "--", "-f"]),
    ],
)
def test_double_dash_ends_the_options(argv: list[str], paths: list[str]) -> None:
    args = cli.build_parser()[0].parse_args(argv)
    assert args.paths == paths
    assert args.force is False and args.key_file == ("K" if "K" in argv else None)


def test_double_dash_in_a_nested_command() -> None:
    args = cli.build_parser()[0].parse_args(["key", "add", "--type", "user", "N", "--", "-x"])
    assert (args.name, args.keyfile, args.key_type) == ("N", "-x", "user")


def test_a_file_named_like_an_option_round_trips(tmp_path: Path, keyfile: Path) -> None:
    (tmp_path / "-x").write_bytes(b"secret data\n" * 100)
    fails(
        "encrypt",
        "-k",
        keyfile,
        "-x",
        "out",
        code=2,
        match="unrecognized arguments: -x",
        cwd=tmp_path,
    )
    kst("encrypt", "-q", "-k", keyfile, "--", "-x", "-x.kst", cwd=tmp_path)
    kst("decrypt", "-q", "--", "-x.kst", "-y", "-k", cwd=tmp_path, check=False)
    assert not (tmp_path / "-y").exists()  # after "--", "-k" is a file too: 3 FILEs, refused
    kst("decrypt", "-k", keyfile, "-q", "--", "-x.kst", "-y", cwd=tmp_path)
    assert (tmp_path / "-y").read_bytes() == b"secret data\n" * 100


def test_options_between_files_in_a_real_run(
    tmp_path: Path, keyfile: Path, plain: tuple[Path, bytes]
) -> None:
    src, data = plain
    kst("encrypt", src, "-k", keyfile, "--backend", "openssl", tmp_path / "c", "-q")
    kst("decrypt", "-q", tmp_path / "c", "--key-file", keyfile, tmp_path / "d")
    assert (tmp_path / "d").read_bytes() == data


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (
            ["encrypt", "a", "--bogus", "b"],
            "unrecognized arguments: --bogus; see 'kstream encrypt --help'",
        ),
        (["key", "add", "N", "F", "G"], "unrecognized arguments: G; see 'kstream key add --help'"),
        (
            ["key", "add", "--type", "user"],
            "the following arguments are required: NAME; see 'kstream key add --help'",
        ),
        (["key", "add", "N", "--type", "root", "F"], "argument --type: invalid choice: 'root'"),
        (["encrypt", "a", "-k"], "argument -k/--key-file: expected one argument"),
        (["inspect", "a", "--json", "b"], "unrecognized arguments: b"),
    ],
)
def test_usage_errors_stay_one_line_and_exit_2(argv: list[str], match: str) -> None:
    fails(*argv, code=2, match=match)


def test_help_of_every_command_is_argparse_s_own(capsys: pytest.CaptureFixture[str]) -> None:
    """The first pass switches the positionals off; help printed from inside it must still
    show them as the parser describes them."""
    parser = cli.build_parser()[0]
    for each in walk(parser):
        words = each.prog.split()[1:]
        with pytest.raises(SystemExit) as exc:
            cli.main([*words, "--help"])
        assert exc.value.code == 0
        assert capsys.readouterr().out == each.format_help(), words


def test_parse_intermixed_leaves_the_parser_as_it_was() -> None:
    parser = Parser(prog="p")
    parser.add_argument("name")
    parser.add_argument("rest", nargs="*", default=["d"])
    parser.add_argument("--opt", required=True)
    before = parser.format_help()
    args, extras = parse_intermixed(parser, ["n", "--opt", "o", "r1", "--x", "r2"])
    assert (args.name, args.rest, args.opt, extras) == ("n", ["r1", "r2"], "o", ["--x"])
    assert parser.format_help() == before and parser.usage is None
    assert parser._actions[-1].required is True
    assert parser.parse_args(["n", "--opt", "o"]).rest == ["d"]
    assert parser._hidden == []


def test_a_run_without_help_formats_no_usage(monkeypatch: pytest.MonkeyPatch) -> None:
    """Formatting a usage costs start-up time; only --help and the man page need one."""

    def refuse(*_: object) -> str:
        raise AssertionError("usage formatted")

    parser = cli.build_parser()[0]
    monkeypatch.setattr(argparse.HelpFormatter, "add_usage", refuse)
    args = parser.parse_args(["encrypt", "a", "-k", "K", "b"])
    assert args.paths == ["a", "b"]


def test_a_usage_error_from_argparse_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        run_main(capsys, "encrypt", "--jobs", "0", "a", "b")
    assert exc.value.code == 2
    line = one_error(capsys.readouterr().err, "argument -j/--jobs: must be at least 1")
    assert line.endswith("; see 'kstream encrypt --help'")


def test_help_is_as_wide_as_argparse_would_make_it() -> None:
    """kstream's parsers take the width without ``shutil`` (see :class:`UsageParser`); the
    help they print on a terminal (120 columns here) or with $COLUMNS is argparse's own.
    The stock run leaves each parser's formatter class as it was given: argparse's own
    width."""
    code = (
        "import sys\nfrom kstream.cli import parsing\nfrom kstream.cli.main import build_parser\n"
        "if sys.argv[1] == 'stock':\n    parsing.at_terminal_width = lambda cls: cls\n"
        "build_parser('encrypt')[0].parse_args(['encrypt', '--help'])"
    )

    def shown(parser: str, columns: str | None) -> bytes:
        env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
        if columns is not None:
            env["COLUMNS"] = columns
        seen = screen.run([sys.executable, "-c", code, parser], stdout_tty=True, env=env)
        assert seen.returncode == 0
        return seen.raw

    on_terminal = shown("kstream", None)
    assert on_terminal == shown("stock", None)
    assert on_terminal != shown("kstream", "80")
    assert shown("kstream", "60") == shown("stock", "60")
