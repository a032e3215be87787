"""``kstream completion bash|zsh`` and ``kstream man``: shell completion and a manual page,
both generated from the parser itself.

Generated rather than written by hand, so that neither can fall behind a new option: the
parser is the only description of the command line. Completion scripts come from ``shtab``
(imported only here, when a script is asked for); the manual page is a small roff writer
below, since every run of it needs only the parser and this module, not a build step.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from typing import Any

from kstream import __version__

SHELLS = ("bash", "zsh")

#: Metavars that name a file or a directory: their arguments complete as such.
FILE_METAVARS = frozenset({"FILE", "PATH", "OUT", "KEYFILE", "FILE.png"})
DIR_METAVARS = frozenset({"DIR"})


def add_completion_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``kstream completion`` and ``kstream man`` on the top-level subparsers."""
    p = sub.add_parser(
        "completion",
        parents=[common],
        help="print a bash or zsh completion script",
        description="Print a completion script for SHELL, generated from kstream's own "
        "parser (commands, options, their choices; paths complete as files).",
        epilog='bash, this shell:   eval "$(kstream completion bash)"\n'
        "bash, for good:     kstream completion bash > "
        "~/.local/share/bash-completion/completions/kstream\n"
        "zsh, for good:      kstream completion zsh > ~/.zfunc/_kstream\n"
        "                    (with fpath=(~/.zfunc $fpath) before compinit in ~/.zshrc)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("shell", metavar="SHELL", choices=SHELLS, help="bash or zsh")
    sub.add_parser(
        "man",
        parents=[common],
        help="print kstream's manual page (roff)",
        description="Print the manual page for kstream(1), every command and "
        "option, as roff: 'kstream man | man -l -' reads it, 'kstream man > "
        "kstream.1' installs it.",
    )


# --------------------------------------------------------------------------- walking


def _subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str, Any]]:
    """(name, one-line help, parser) of each subcommand of ``parser``, in --help order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, command in action.choices.items():
                yield name, helps.get(name, ""), command


def walk(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every parser below it (``key``, then ``key add``...)."""
    yield parser
    for _, _, command in _subcommands(parser):
        yield from walk(command)


# --------------------------------------------------------------------------- completion


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The ``shtab`` script for ``shell``; file and directory arguments are marked first
    (by their metavar, which is how --help names them too)."""
    import shtab  # only this command needs it

    for each in walk(parser):
        for action in each._actions:
            if action.metavar in FILE_METAVARS:
                action.complete = shtab.FILE  # type: ignore[attr-defined]
            elif action.metavar in DIR_METAVARS:
                action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]
    return str(shtab.complete(parser, shell=shell))


def cmd_completion(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    print(completion_script(parser, args.shell), end="")
    return 0


# --------------------------------------------------------------------------- manual page


def _roff(text: str) -> str:
    """Text safe in roff: backslashes escaped, hyphens as minus signs (so that options can
    be copied from the rendered page), other than ASCII as groff's ``\\[uXXXX]``, no line
    starting with a control character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    text = "".join(c if c.isascii() else f"\\[u{ord(c):04X}]" for c in text)
    return re.sub(r"^([.'])", r"\\&\1", text, flags=re.MULTILINE)


def _paragraph(text: str) -> list[str]:
    return [_roff(" ".join(text.split()))] if text.strip() else []


def _verbatim(text: str) -> list[str]:
    return [".PP", ".nf", *(_roff(line) for line in text.strip("\n").splitlines()), ".fi"]


def _option_lines(parser: argparse.ArgumentParser) -> list[str]:
    """A ``.TP`` entry per argument: its names or metavar in bold, then its help."""
    formatter = parser._get_formatter()
    lines: list[str] = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        names = formatter._format_action_invocation(action)
        tag = ", ".join(f"\\fB{_roff(part)}\\fR" for part in names.split(", "))
        lines += [".TP", tag, *_paragraph(formatter._expand_help(action) if action.help else "")]
    return lines


def _usage(parser: argparse.ArgumentParser) -> str:
    """The usage argparse prints, without its ``usage: `` and the indent that came with it."""
    prefix = "usage: "
    first, *more = parser.format_usage().removeprefix(prefix).splitlines()
    return "\n".join([first, *(line.removeprefix(" " * len(prefix)) for line in more)])


def _own_epilog(epilog: str | None, top_epilog: str | None) -> str:
    """What a command's epilog adds to the manual: not the exit status table (its own
    section) nor the examples (the EXAMPLES section)."""
    from kstream.cli.cipher_args import EXAMPLES

    text = (epilog or "").removesuffix(top_epilog or "").strip()
    return "" if text in EXAMPLES.values() else text


def _examples() -> list[str]:
    from kstream.cli.cipher_args import EXAMPLES

    lines = []
    for text in EXAMPLES.values():
        lines += _verbatim(text.partition("\n")[2])
    return [".SH EXAMPLES", *lines]


def _command_sections(
    parser: argparse.ArgumentParser,
    path: str,
    top_epilog: str | None,
) -> list[str]:
    lines: list[str] = []
    for name, summary, command in _subcommands(parser):
        full = f"{path} {name}"
        lines += [
            f'.SS "{_roff(full)}"',
            *_verbatim(_usage(command)),
            ".PP",
            *_paragraph(command.description or summary),
        ]
        lines += _option_lines(command)
        epilog = _own_epilog(command.epilog, top_epilog)
        if epilog:
            lines += _verbatim(epilog)
        lines += _command_sections(command, full, top_epilog)
    return lines


def manual_page(parser: argparse.ArgumentParser) -> str:
    """kstream(1) in roff (man macros): synopsis, every command with its usage and options,
    and the exit status table."""
    prog = parser.prog
    summary = (parser.description or "").split(". ")[0].rstrip(".")
    lines = [
        f'.TH {prog.upper()} 1 "" "{prog} {__version__}" "User Commands"',
        ".nh",
        ".ad l",  # option names must not be hyphenated or stretched
        ".SH NAME",
        f"{prog} \\- {_roff(summary[:1].lower() + summary[1:])}",
        ".SH SYNOPSIS",
        ".nf",
        *(f"\\fB{_roff(f'{prog} {name}')}\\fR \\fI...\\fR" for name, _, _ in _subcommands(parser)),
        f"\\fB{prog}\\fR \\fICOMMAND\\fR \\fB\\-\\-help\\fR",
        ".fi",
        ".SH DESCRIPTION",
        *_paragraph(parser.description or ""),
        ".PP",
        _roff(
            "Options may come before, between or after the positional arguments; "
            "'--' ends the options (for a file named like an option)."
        ),
        ".SH OPTIONS",
        *_option_lines(parser),
        ".SH COMMANDS",
        *_command_sections(parser, prog, parser.epilog),
    ]
    lines += _examples()
    if parser.epilog:
        title, _, table = parser.epilog.partition("\n")  # "exit status:" and its rows
        lines += [f'.SH "{_roff(title.rstrip(":").upper())}"', *_verbatim(table)]
    lines += [".SH SEE ALSO", "\\fBopenssl\\-enc\\fR(1), \\fBage\\fR(1), \\fBkeyctl\\fR(1)"]
    return "\n".join(lines) + "\n"


def cmd_man(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    print(manual_page(parser), end="")
    return 0
