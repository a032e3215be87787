"""kstream's argparse: every parser is a :class:`UsageParser` (a usage error is one line, help
fits the terminal without ``shutil``), and options may stand between positionals in every
subcommand. (A plain ``encrypt`` or ``decrypt`` command line is read without argparse:
:mod:`kstream.cli.cipher_args`.)

People type ``kstream key add NAME --type user FILE`` and ``kstream encrypt IN -k KEY OUT``
(as ``cp``, ``openssl`` and ``age`` allow). Plain argparse stops filling positionals at the
first option and rejects what follows as "unrecognized arguments". Its answer,
``parse_intermixed_args``, refuses any parser that has subcommands, so it cannot be called
on the whole command line; and in Python 3.11 it drops the positionals after a ``--`` that
comes before the first positional (``kstream encrypt -k KEY -- -x OUT``).

So the subcommand action is replaced: argparse still parses the options before the command
name and picks the command, and the chosen command's parser (a leaf: ``encrypt``,
``key add``...) reads the rest in two passes of its own, options first, then positionals,
with everything after ``--`` kept as positionals. A command with its own subcommands
(``key``) is parsed the ordinary way and hands on to its chosen leaf in turn.

:class:`Parser` carries the replacement: a parser built from it registers the action for
its ``add_subparsers``, and the parsers it creates for the commands are of the same class,
so ``key``'s nested subcommands get it too.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from kstream.cli import tui

if TYPE_CHECKING:
    _SubParsersBase = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    _SubParsersBase = argparse._SubParsersAction


class UsageParser(argparse.ArgumentParser):
    """argparse, but usage errors are one ``kstream: error:`` line and exit status 2, and
    help is formatted to the terminal's width without ``shutil``.

    argparse makes a formatter for every add_argument (to check its metavar), and one with no
    width asks ``shutil.get_terminal_size`` for it: importing shutil costs more start-up time
    than a small file takes to encrypt. So the parser's ``formatter_class`` (argparse's
    documented hook) is given the same width, from :func:`~kstream.cli.tui.terminal_columns`,
    by default.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Before argparse's __init__, which already adds -h (and makes a formatter for it).
        if len(args) < 6:  # formatter_class is the 6th parameter
            kwargs["formatter_class"] = at_terminal_width(
                kwargs.get("formatter_class", argparse.HelpFormatter)
            )
        super().__init__(*args, **kwargs)
        self.formatter_class = at_terminal_width(self.formatter_class)

    def error(self, message: str) -> NoReturn:
        tui.error(f"{message}; see '{self.prog} --help'")
        sys.exit(tui.EXIT_USAGE)


_sized: dict[type, type] = {}


def at_terminal_width(formatter_class: Any) -> Any:
    """``formatter_class`` (a :class:`argparse.HelpFormatter` subclass), made to default its
    width to ``terminal_columns() - 2``, as argparse's own default is the columns that
    ``shutil`` reports less 2. Anything else (a factory function, say) is left as it is."""
    if not (
        isinstance(formatter_class, type) and issubclass(formatter_class, argparse.HelpFormatter)
    ):
        return formatter_class
    if formatter_class in _sized.values():
        return formatter_class
    if formatter_class not in _sized:

        class Sized(formatter_class):  # type: ignore[misc]
            def __init__(self, prog: str, *args: Any, **kwargs: Any) -> None:
                if len(args) < 3 and kwargs.get("width") is None:  # width: the 4th argument
                    kwargs["width"] = tui.terminal_columns() - 2
                super().__init__(prog, *args, **kwargs)

        Sized.__name__ = Sized.__qualname__ = formatter_class.__name__
        _sized[formatter_class] = Sized
    return _sized[formatter_class]


def show_help(parser: argparse.ArgumentParser) -> int:
    """Help on stderr for a command line that names no command; the run is a usage error."""
    parser.print_help(sys.stderr)
    return tui.EXIT_USAGE


def _has_subcommands(parser: argparse.ArgumentParser) -> bool:
    return any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)


def parse_intermixed(parser: Parser, args: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """``parse_known_intermixed_args`` for a parser without subcommands, but correct about
    ``--``: options are read from before it only, and everything after it is positional.

    The first pass reads the options with every positional switched off (what argparse's
    own version does); the strings it leaves are the positionals, parsed in the second pass
    together with the ones after ``--``.
    """
    args = list(args)
    cut = args.index("--") if "--" in args else len(args)
    head, tail = args[:cut], args[cut:]  # tail keeps its "--"
    optionals = [a for a in parser._actions if a.option_strings]
    parser._hidden = [(a, a.nargs, a.default) for a in parser._actions if not a.option_strings]
    try:
        for action, _, _ in parser._hidden:
            action.nargs = argparse.SUPPRESS
            action.default = argparse.SUPPRESS
        namespace, rest = parser.parse_known_args(head)
    finally:
        for action, nargs, default in parser._hidden:
            action.nargs, action.default = nargs, default
        parser._hidden = []
    # What the first pass left that looks like an option is unknown; taken out, it
    # cannot shift the positionals after it into the extras as well.
    unknown = [s for s in rest if parser._parse_optional(s) is not None]
    rest = [s for s in rest if s not in unknown]
    # The options were checked (required ones included) in the first pass.
    saved_required = [(a, a.required) for a in optionals]
    saved_groups = [(g, g.required) for g in parser._mutually_exclusive_groups]
    try:
        for action in optionals:
            action.required = False
        for group in parser._mutually_exclusive_groups:
            group.required = False
        namespace, extras = parser.parse_known_args(rest + tail, namespace)
        return namespace, unknown + extras
    finally:
        for action, required in saved_required:
            action.required = required
        for group, required in saved_groups:
            group.required = required


class _IntermixedSubParsers(_SubParsersBase):
    """argparse's subcommand action, except that a leaf command is parsed with
    :func:`parse_intermixed` and reports what it does not know itself (its own ``--help``
    is the one to read)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        assert isinstance(values, list)  # nargs=PARSER: the command name and what follows
        name, *rest = values
        if name not in self._name_parser_map:
            # argparse's own wording (invalid choice) comes from the same call.
            super().__call__(parser, namespace, values, option_string)
            return
        self.parse_command(name, rest, namespace)

    def parse_command(self, name: str, rest: Sequence[str], namespace: argparse.Namespace) -> None:
        """Parse ``rest``, the words after command ``name`` (one of this action's), into
        ``namespace``, as the command's parser reports them."""
        if self.dest is not argparse.SUPPRESS:
            setattr(namespace, self.dest, name)
        command = self._name_parser_map[name]
        assert isinstance(command, Parser)  # add_subparsers' default: the parser's class
        if _has_subcommands(command):
            sub_namespace, extras = command.parse_known_args(rest)
        else:
            sub_namespace, extras = parse_intermixed(command, rest)
        if extras:
            command.error(f"unrecognized arguments: {' '.join(extras)}")
        for key, value in vars(sub_namespace).items():
            setattr(namespace, key, value)


def commands_action(prog: str, **kwargs: Any) -> _IntermixedSubParsers:
    """The action that ``add_subparsers(**kwargs)`` adds to a :class:`Parser` named ``prog``
    (one without positionals), made without that parser: a command line whose first word
    names the command needs nothing else of it, and each parser built costs start-up time.
    Its :meth:`~_IntermixedSubParsers.parse_command` then parses the command."""
    return _IntermixedSubParsers(option_strings=[], prog=prog, **kwargs)


class Parser(UsageParser):
    """:class:`UsageParser` (one-line usage errors) whose subcommands accept
    options between positionals."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", _IntermixedSubParsers)
        #: The positionals :func:`parse_intermixed`'s first pass has switched off, with
        #: their nargs and defaults: help asked for in that pass shows them as they are.
        #: (argparse's own version formats the usage up front instead, on every run, for
        #: the rare one that asks for help.)
        self._hidden: list[tuple[argparse.Action, Any, Any]] = []

    def format_usage(self) -> str:
        with self._shown():
            return super().format_usage()

    def format_help(self) -> str:
        with self._shown():
            return super().format_help()

    @contextlib.contextmanager
    def _shown(self) -> Iterator[None]:
        hidden = [(a, a.nargs, a.default) for a, _, _ in self._hidden]
        for action, nargs, default in self._hidden:
            action.nargs, action.default = nargs, default
        try:
            yield
        finally:
            for action, nargs, default in hidden:
                action.nargs, action.default = nargs, default
