"""The ``kstream`` command: its parser, dispatch to the command modules, and the console
script's entry point.

Each command module registers its own subcommands and handlers; this module only fixes their
order in ``--help`` and turns whatever a handler raises into an exit status via
:mod:`kstream.cli.tui`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from typing import NoReturn

from kstream import __version__
from kstream.bench.cli import add_bench_parser, cmd_bench
from kstream.cli import tui
from kstream.cli.cipher import add_cipher_parsers, cmd_cipher
from kstream.cli.completion import add_completion_parsers, cmd_completion, cmd_man
from kstream.cli.info import add_info_parsers, cmd_backends, cmd_demo, cmd_selftest
from kstream.cli.inspect import add_inspect_parser, cmd_inspect
from kstream.cli.key import add_key_parser, add_keygen_parser, cmd_key, cmd_keygen
from kstream.cli.parsing import Parser
from kstream.errors import command_line_words
from kstream.memory import tune_malloc


def build_parser() -> argparse.ArgumentParser:
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
    parser.add_argument("-q", "--quiet", action="store_true", dest="quiet_first",
                        help="no notices on stderr (as the command's own -q)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    # --debug is accepted before or after the command name.
    common = tui.Parser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks on errors")

    add_cipher_parsers(sub, common)
    add_keygen_parser(sub, common)
    add_inspect_parser(sub, common)
    add_info_parsers(sub, common)
    add_key_parser(sub, common)
    add_bench_parser(sub, common)
    add_completion_parsers(sub, common)
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "encrypt": cmd_cipher,
    "decrypt": cmd_cipher,
    "keygen": cmd_keygen,
    "inspect": cmd_inspect,
    "backends": cmd_backends,
    "selftest": cmd_selftest,
    "demo": cmd_demo,
    "key": cmd_key,
    "bench": cmd_bench,
    # These two describe the command line itself, so they get a parser of their own.
    "completion": lambda args: cmd_completion(args, build_parser()),
    "man": lambda args: cmd_man(args, build_parser()),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    tune_malloc()  # before any worker thread exists (see kstream.memory)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        return tui.show_help(parser)
    args.quiet = args.quiet_first or getattr(args, "quiet", False)
    with command_line_words():  # errors name --force, not the API's force=True
        try:
            return COMMANDS[args.command](args)
        except Exception as exc:
            return tui.report(exc, debug=args.debug)


def entry() -> NoReturn:
    """Console-script entry: exit without waiting for worker threads stuck in pipe reads."""
    os._exit(tui.flush(main()))
