"""encrypt's and decrypt's command line (kstream.cli.cipher_args): what argparse registers from
the table, and the plain command lines read without it, which must come out exactly as
argparse reads them."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kstream.cli import cipher_args
from kstream.cli import main as cli

#: What the top-level parser adds to every command's namespace.
TOP_LEVEL = ("command", "debug", "quiet_first")


def parsed(command: str, words: list[str]) -> dict[str, Any] | None:
    """What argparse makes of ``kstream COMMAND WORDS``: the command's attributes, or None
    for a usage error (or help)."""
    try:
        args, _ = cli.parse_command_first([command, *words])
    except SystemExit:
        return None
    return {k: v for k, v in vars(args).items() if k not in TOP_LEVEL}


#: Command lines of the usual kinds: each is read without argparse.
PLAIN = [
    [],
    ["a", "b"],
    ["-k", "K", "a", "b"],
    ["-q", "--no-progress", "-f", "-k", "K", "in", "out"],
    ["in", "-k", "K", "out", "--progress"],
    ["-", "-", "--key-file", "K"],
    ["-p", "notes.txt", "notes.txt.kst"],
    ["--passphrase-file", "P", "a", "b", "--quiet", "--force"],
    ["--key-name", "backup", "db.dump", "db.dump.kst"],
    ["-k", "K", "--suffix", ".kst", "x.log", "y.log", "z.log"],
    ["-k", "K", "--output-dir", "out", "x"],
    ["-k", "K", "-o", "out.kst", "in"],
    ["--output", "o", "-k", "K"],
    ["--backend", "openssl", "--verify", "-k", "K", "a", "b"],
    ["--transfer", "splice", "--driver", "ctr-aes-aesni", "-k", "K", "a", "b"],
    ["--raw", "--iv", "random", "-k", "K", "a", "b"],
    ["-k", "", "a", ""],  # empty words are values and paths to argparse too
]


@pytest.mark.parametrize("command", ["encrypt", "decrypt"])
@pytest.mark.parametrize("words", PLAIN, ids=[" ".join(w) or "(none)" for w in PLAIN])
def test_a_plain_command_line_is_read_as_argparse_reads_it(command: str, words: list[str]) -> None:
    plain = cipher_args.read_plain(command, words)
    assert plain is not None
    assert plain == parsed(command, words)


#: Command lines left to argparse: what it parses differently from plain words, converts,
#: or rejects (then in its own words).
LEFT_TO_ARGPARSE = [
    ["--help"],
    ["-h"],
    ["--forc", "a", "b"],  # an abbreviation
    ["--key-file=K", "a", "b"],
    ["-qf", "-k", "K", "a", "b"],
    ["-kK", "a", "b"],
    ["-k", "K", "--", "-a", "b"],
    ["-k", "K", "-k", "L", "a", "b"],  # given twice
    ["-q", "-q", "-k", "K"],
    ["-k", "K", "-p", "a", "b"],  # two keys
    ["-k", "K", "--key-name", "N"],
    ["--backend", "nope", "-k", "K"],
    ["-j", "2", "-k", "K", "a", "b"],  # a number
    ["--key-fd", "3", "a", "b"],
    ["--key-serial", "0x1f", "a", "b"],
    ["-k"],  # no value
    ["-k", "K", "-o", "-", "in"],  # a value that looks like an option
    ["-k", "K", "-5", "b"],
    ["--debug", "-k", "K", "a", "b"],  # the top level's option
    ["--unknown", "a", "b"],
]


@pytest.mark.parametrize("command", ["encrypt", "decrypt"])
@pytest.mark.parametrize("words", LEFT_TO_ARGPARSE, ids=[" ".join(w) for w in LEFT_TO_ARGPARSE])
def test_anything_else_is_left_to_argparse(command: str, words: list[str]) -> None:
    assert cipher_args.read_plain(command, words) is None


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("encrypt", ["--work-factor", "20", "-p", "a", "b"]),
        ("decrypt", ["--max-work-factor", "22", "a", "b"]),
        ("decrypt", ["--range", "10:20", "-k", "K", "a", "b"]),
    ],
)
def test_each_command_s_own_typed_options_are_argparse_s(command: str, words: list[str]) -> None:
    assert cipher_args.read_plain(command, words) is None
    assert parsed(command, words) is not None


#: Words a command line is made of: every spelling of every option (plain or not, and a
#: misspelling), values of each kind, and paths.
SPELLINGS = {
    name
    for command in ("encrypt", "decrypt")
    for names, _ in cipher_args._options(command)
    for name in names
    if name.startswith("-")
}
WORDS = st.sampled_from(
    [
        *sorted(SPELLINGS),
        *("--no-progress", "--debug", "--", "-h", "--forc", "-qf", "--key-file=K"),
        *("openssl", "auto", "splice", "7", "0x10", "1:5", "-", "", "-x", "-1", "a", "b.kst"),
    ]
)


@given(command=st.sampled_from(["encrypt", "decrypt"]), words=st.lists(WORDS, max_size=8))
@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
def test_whatever_it_reads_argparse_reads_the_same(command: str, words: list[str]) -> None:
    plain = cipher_args.read_plain(command, words)
    if plain is not None:
        assert plain == parsed(command, words)


def test_the_defaults_are_argparse_s() -> None:
    for command in ("encrypt", "decrypt"):
        assert cipher_args.defaults(command) == parsed(command, [])


def test_every_plain_spelling_is_the_registered_option_s() -> None:
    """Each spelling read without argparse is one the parser has, for the same attribute,
    taking a value exactly when the parser's option does."""
    parser, _ = cli.build_parser("decrypt")
    assert parser._subparsers is not None
    (commands,) = parser._subparsers._group_actions
    decrypt = commands.choices["decrypt"]  # type: ignore[index]
    actions = decrypt._option_string_actions
    for spelling, (dest, takes) in cipher_args.plain_options("decrypt").items():
        action = actions[spelling]
        assert action.dest == dest
        assert (action.nargs == 0) is isinstance(takes, bool)
        assert action.type is None
        assert tuple(action.choices or ()) == (() if isinstance(takes, bool) else takes)


def test_the_key_options_are_one_group_in_the_parser() -> None:
    parser, _ = cli.build_parser("encrypt")
    with pytest.raises(SystemExit):
        parser.parse_args(["encrypt", "-k", "K", "--key-name", "N", "a", "b"])
    assert parsed("encrypt", ["-k", "K", "--passphrase-file", "P"]) is None


def test_read_command_line_uses_argparse_only_where_it_must() -> None:
    args, handlers = cli.read_plain(["encrypt", "-k", "K", "a", "b"]) or (None, {})
    assert args is not None and not isinstance(args, argparse.Namespace)
    assert (args.command, args.debug, args.quiet_first, args.paths) == (
        "encrypt",
        False,
        False,
        ["a", "b"],
    )
    assert set(handlers) == {"encrypt"}
    read = cli.read_command_line(["encrypt", "-q", "-k", "K", "a", "b"])
    assert not isinstance(read, int) and read[0].quiet is True
    read = cli.read_command_line(["encrypt", "-j", "2", "-k", "K", "a", "b"])
    assert not isinstance(read, int) and isinstance(read[0], argparse.Namespace)
    assert cli.read_plain(["keygen", "k"]) is None


def test_a_plain_run_imports_no_argparse(tmp_path: Path) -> None:
    (tmp_path / "in").write_bytes(b"x" * 5000)
    key = tmp_path / "k"
    key.write_text("00" * 32)
    code = (
        "import sys\nfrom kstream.cli.main import main\n"
        f"code = main(['encrypt', '-q', '-k', {str(key)!r}, {str(tmp_path / 'in')!r}, "
        f"{str(tmp_path / 'out')!r}])\n"
        "print(code, *(m in sys.modules for m in ('argparse', 'gettext', 'locale')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "False", "False", "False"]
    assert (tmp_path / "out").stat().st_size > 5000
