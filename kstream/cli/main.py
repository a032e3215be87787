"""The ``kstream`` command: its parser, dispatch to the command modules, and the console
script's entry point.

Each command module registers its own subcommands and handlers; this module only fixes their
order in ``--help`` and turns whatever a handler raises into an exit status via
:mod:`kstream.cli.tui`.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, NoReturn, cast

from kstream import __version__
from kstream.cli import tui
from kstream.errors import command_line_words

if TYPE_CHECKING:  # argparse is imported only for a command line that needs it
    import argparse

    Handler = Callable[[argparse.Namespace], int]
    #: Registers a module's subcommands on the top-level subparsers (with the shared options).
    Adder = Callable[[Any, argparse.ArgumentParser], object]


# Each command module is imported only when one of its commands runs (or for --help, the
# man page and completion, which show them all): a small file's encryption should not pay
# for importing the benchmark, the backends report or the shell completion.


def _encrypt() -> tuple[Adder, dict[str, Handler]]:
    from kstream.cli.cipher import cmd_cipher
    from kstream.cli.cipher_args import add_encrypt_parser

    return add_encrypt_parser, {"encrypt": cmd_cipher}


def _decrypt() -> tuple[Adder, dict[str, Handler]]:
    from kstream.cli.cipher import cmd_cipher
    from kstream.cli.cipher_args import add_decrypt_parser

    return add_decrypt_parser, {"decrypt": cmd_cipher}


def _keygen() -> tuple[Adder, dict[str, Handler]]:
    from kstream.cli.key import add_keygen_parser, cmd_keygen

    return add_keygen_parser, {"keygen": cmd_keygen}


def _inspect() -> tuple[Adder, dict[str, Handler]]:
    from kstream.cli.inspect import add_inspect_parser, cmd_inspect

    return add_inspect_parser, {"inspect": cmd_inspect}


def _info() -> tuple[Adder, dict[str, Handler]]:
    from kstream.cli.info import add_info_parsers, cmd_backends, cmd_demo, cmd_selftest

    return add_info_parsers, {"backends": cmd_backends, "selftest": cmd_selftest, "demo": cmd_demo}


def _key() -> tuple[Adder, dict[str, Handler]]:
    from kstream.cli.key import add_key_parser, cmd_key

    return add_key_parser, {"key": cmd_key}


def _bench() -> tuple[Adder, dict[str, Handler]]:
    from kstream.bench.cli import add_bench_parser, cmd_bench

    return add_bench_parser, {"bench": cmd_bench}


def _completion() -> tuple[Adder, dict[str, Handler]]:
    from kstream.cli.completion import add_completion_parsers, cmd_completion, cmd_man

    # These two describe the command line itself, so they get a whole parser of their own.
    return add_completion_parsers, {
        "completion": lambda args: cmd_completion(args, build_parser()[0]),
        "man": lambda args: cmd_man(args, build_parser()[0]),
    }


#: In the order ``--help`` lists them: each loader and the commands it brings.
GROUPS: list[tuple[Callable[[], tuple[Adder, dict[str, Handler]]], tuple[str, ...]]] = [
    (_encrypt, ("encrypt",)),
    (_decrypt, ("decrypt",)),
    (_keygen, ("keygen",)),
    (_inspect, ("inspect",)),
    (_info, ("backends", "selftest", "demo")),
    (_key, ("key",)),
    (_bench, ("bench",)),
    (_completion, ("completion", "man")),
]


def command_of(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names, if it names a known one: the first word that is not an
    option (the top-level options take no values)."""
    for arg in argv:
        if arg == "--" or not arg.startswith("-"):
            return arg if any(arg in names for _, names in GROUPS) else None
    return None


#: What the top-level parser's options leave in the namespace when none of them is given.
_TOP_LEVEL_DEFAULTS: dict[str, Any] = {"debug": False, "quiet_first": False}


def commands_settings() -> dict[str, Any]:
    """The commands' action, as the top-level parser adds it and as
    :func:`parse_command_first` makes it alone."""
    from kstream.cli.parsing import Parser

    return {"dest": "command", "metavar": "COMMAND", "parser_class": Parser}


def build_parser(command: str | None = None) -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    """The parser and the handlers: of every command, or, given ``command``, of the group
    that holds it (encrypt and decrypt are a group each: building a parser costs start-up
    time; the top-level ``--help`` is then never reached: a command's own ``--help`` is)."""
    import argparse

    from kstream.cli.parsing import Parser

    parser = Parser(  # options may stand between positionals in every command
        prog=tui.PROG,
        description="Encrypt and decrypt files and pipes with AES-CTR, streaming, through "
        "the Linux kernel crypto API (AF_ALG) or OpenSSL.",
        epilog=tui.EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"kstream {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    # A dest of its own: a subcommand's -q default would overwrite a shared one.
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        dest="quiet_first",
        help="no notices on stderr (as the command's own -q)",
    )
    return parser, _add_commands(parser.add_subparsers(**commands_settings()), command)


def _add_commands(sub: Any, command: str | None) -> dict[str, Handler]:
    """Register every command (or only ``command``'s group) on the commands' action ``sub``."""
    import argparse

    from kstream.cli.parsing import UsageParser

    # --debug is accepted before or after the command name.
    common = UsageParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors"
    )
    handlers: dict[str, Handler] = {}
    for load, names in GROUPS:
        if command is None or command in names:
            add, found = load()
            add(sub, common)
            handlers.update(found)
    return handlers


def parse_command_first(argv: Sequence[str]) -> tuple[argparse.Namespace, dict[str, Handler]]:
    """Parse ``argv`` whose first word names a command, as :func:`build_parser`'s parser
    would, building only that command's parser: the top-level parser would read no option
    of its own (they stand before the command) and only hand the rest on."""
    import argparse

    from kstream.cli.parsing import commands_action

    command, *rest = argv
    sub = commands_action(tui.PROG, **commands_settings())
    handlers = _add_commands(sub, command)
    args = argparse.Namespace(**_TOP_LEVEL_DEFAULTS)
    sub.parse_command(command, rest, args)
    return args, handlers


def read_plain(argv: Sequence[str]) -> tuple[argparse.Namespace, dict[str, Handler]] | None:
    """``encrypt`` or ``decrypt`` first, then only paths and plain options: read without
    argparse (see :mod:`kstream.cli.cipher_args`), into what :func:`parse_command_first`
    would make of it; None for any other command line."""
    if not argv or argv[0] not in ("encrypt", "decrypt"):
        return None
    from kstream.cli import cipher_args

    values = cipher_args.read_plain(argv[0], argv[1:])
    if values is None:
        return None
    from kstream.cli.cipher import cmd_cipher

    # An argparse.Namespace in all but its class: the handlers only read and set attributes.
    args = SimpleNamespace(**_TOP_LEVEL_DEFAULTS, command=argv[0], **values)
    return cast("argparse.Namespace", args), {argv[0]: cmd_cipher}


def read_command_line(argv: Sequence[str]) -> tuple[argparse.Namespace, dict[str, Handler]] | int:
    """The command line read: its arguments and the handlers, or the exit status of a
    command line that names no command (after its help)."""
    command = command_of(argv)
    if command is not None and argv[0] == command:  # the usual case: the command comes first
        args, handlers = read_plain(argv) or parse_command_first(argv)
    else:
        from kstream.cli.parsing import show_help

        parser, handlers = build_parser(command)
        args = parser.parse_args(argv)
        if args.command is None:
            return show_help(parser)
    args.quiet = args.quiet_first or getattr(args, "quiet", False)
    return args, handlers


def run_command(args: argparse.Namespace, handlers: dict[str, Handler]) -> int:
    """Run the command :func:`read_command_line` read; returns the exit status."""
    with command_line_words():  # errors name --force, not the API's force=True
        try:
            return handlers[args.command](args)
        except Exception as exc:
            return tui.report(exc, debug=args.debug)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    read = read_command_line(sys.argv[1:] if argv is None else list(argv))
    return read if isinstance(read, int) else run_command(*read)


def entry() -> NoReturn:
    """Console-script entry: exit without waiting for worker threads stuck in pipe reads.

    :func:`kstream.cli.entry` turns the garbage collector off before the first import: until
    the command runs, the process makes objects that live until it exits (modules, the
    parsed command line), so collections would find nothing to free and only slow a short
    run down (docs/benchmark.md, "What a run costs"). They are frozen (later collections
    skip them) and collection resumes as the command starts.
    """
    read = read_command_line(sys.argv[1:])
    gc.freeze()
    gc.enable()
    os._exit(tui.flush(read if isinstance(read, int) else run_command(*read)))
