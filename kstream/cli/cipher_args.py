"""The command line of ``kstream encrypt`` and ``decrypt``, written once as data: argparse
registers it, and :func:`read_plain` reads the plain command lines from it without argparse.

A small file's encryption is mostly start-up, and argparse (importing it, building the
parser, reading the line) is a large share of what kstream adds to the interpreter's own
(docs/benchmark.md measures it). So a command line made only of paths and options spelled
out in full, each given once, with values that need no conversion, is read straight from
the table below. Anything else (``--help``, an abbreviation, ``--opt=value``, ``-qf``, a
number, ``--``, an option given twice or two keys, a misspelling) goes to argparse, which
parses it or rejects it in its usual words. Both give the same namespace (the tests compare
them), and this module imports argparse only to register the options.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kstream.backends.base import BACKEND_NAMES
from kstream.cli import tui
from kstream.cli.many import DEFAULT_SUFFIX, FILES_IN_FLIGHT, SMALL_FILES_IN_FLIGHT
from kstream.keys.passphrase import DEFAULT_WORK_FACTOR, MAX_WORK_FACTOR

#: Sets the default of ``--backend``, for hosts where the answer never changes (a container
#: without AF_ALG): choosing there, even ``auto``, also silences the fallback notice.
BACKEND_ENV = "KSTREAM_BACKEND"

#: START:END as parsed: Python slice bounds (None: from the start, to the end).
Bounds = tuple[int | None, int | None]


def _positive(text: str) -> int:
    import argparse  # loaded: only argparse calls this

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _serial(text: str) -> int:
    import argparse

    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a key serial number") from None


def parse_range(text: str) -> Bounds:
    """``START:END``, ``START:`` or ``:END``: plaintext byte offsets, END excluded, a
    negative one counted from the end (as a Python slice)."""
    import argparse

    start, colon, end = text.partition(":")
    if not colon:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not START:END (byte offsets; either may be left out, as in 100: or :100)"
        )
    try:
        return (int(start) if start.strip() else None, int(end) if end.strip() else None)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not START:END: each side must be a whole number of bytes"
        ) from None


#: ``action`` for ``--X``/``--no-X`` (argparse's BooleanOptionalAction, named here without
#: importing argparse).
_NEGATABLE = "negatable"

#: An option: its names and add_argument's other arguments.
Option = tuple[tuple[str, ...], dict[str, Any]]

_IN_OUT: tuple[Option, ...] = (
    (
        ("paths",),
        {
            "metavar": "FILE",
            "nargs": "*",
            "help": "IN OUT: input and output, each a path or '-' (stdin/stdout; "
            "none at all: stdin to stdout); or FILE... with --suffix/--output-dir, "
            "one output per FILE (one FILE alone is the same as --suffix .kst)",
        },
    ),
    (
        ("-o", "--output"),
        {
            "metavar": "OUT",
            "dest": "output_path",
            "help": "write to OUT (a path or '-'); the one FILE, if any, is IN (default: stdin)",
        },
    ),
)
#: The ways to give the key, of which a command line names at most one.
_KEYS: tuple[Option, ...] = (
    (
        ("-k", "--key-file"),
        {"metavar": "PATH", "help": "key file: 16, 24 or 32 raw bytes, or the same as hex text"},
    ),
    (
        ("--key-fd",),
        {"metavar": "N", "type": int, "help": "read the key from inherited file descriptor N"},
    ),
    # The keyring's options (kstream.cli.key loads such a key).
    (
        ("--key-name",),
        {
            "metavar": "NAME",
            "help": "key kstream:NAME from the kernel keyring (session keyring, then "
            "user keyring); implies the kernel backend",
        },
    ),
    (
        ("--key-serial",),
        {
            "metavar": "N",
            "type": _serial,
            "help": "key with serial N from the kernel keyring; implies the kernel backend",
        },
    ),
    (
        ("-p", "--passphrase"),
        {
            "action": "store_true",
            "help": "a passphrase, asked on the terminal (/dev/tty, no echo); "
            "decrypt asks by itself when the file needs one",
        },
    ),
    (
        ("--passphrase-fd",),
        {
            "metavar": "N",
            "type": int,
            "help": "read the passphrase (its first line) from file descriptor N",
        },
    ),
    (
        ("--passphrase-file",),
        {"metavar": "PATH", "help": "read the passphrase from the first line of PATH"},
    ),
)
_REST: tuple[Option, ...] = (
    (
        ("--backend",),
        {
            "choices": BACKEND_NAMES,
            "default": None,
            "help": f"crypto backend (default: ${BACKEND_ENV} if set, else auto = kernel "
            "if usable, else openssl, with a notice)",
        },
    ),
    (
        ("--driver",),
        {"metavar": "NAME", "help": "kernel backend: use this ctr(aes) driver, e.g. ctr-aes-aesni"},
    ),
    (
        ("--transfer",),
        {
            "choices": ("auto", "sendmsg", "splice", "sendfile"),
            "default": "auto",
            "help": "kernel backend: how data enters the kernel",
        },
    ),
    (
        ("--verify",),
        {
            "action": "store_true",
            "help": "check every output byte of the kernel backend against OpenSSL",
        },
    ),
    (
        ("--raw",),
        {
            "action": "store_true",
            "help": "no header: bare AES-CTR, as 'openssl enc -aes-N-ctr'; needs --iv",
        },
    ),
    (
        ("--iv",),
        {
            "metavar": "HEX|random",
            "help": "32 hex digits; only with --raw. Never reuse an IV with the same key: "
            "two raw outputs under one key and IV reveal the XOR of their plaintexts, "
            "and a raw IV at or just above a kstream file's IV (its header is public) "
            "reuses that file's keystream. 'random' (encrypt only) picks a fresh IV and "
            "prints it on stderr as 'kstream: iv: HEX' (also with -q)",
        },
    ),
    (
        ("-f", "--force"),
        {"action": "store_true", "help": "allow overwriting an existing OUT"},
    ),
    (
        ("-j", "--jobs"),
        {
            "type": _positive,
            "metavar": "N",
            "default": None,
            "help": "parallel ranges for a regular-file IN and a file OUT (default: the "
            "number of CPUs); with many files: files in flight (default: "
            f"{FILES_IN_FLIGHT}, or {SMALL_FILES_IN_FLIGHT} when the files average "
            "under 1 MiB)",
        },
    ),
    (
        ("--suffix",),
        {
            "metavar": "SUF",
            "help": "many files: encrypting writes FILE+SUF, decrypting FILE without SUF "
            f"(default {DEFAULT_SUFFIX})",
        },
    ),
    (
        ("--output-dir",),
        {
            "metavar": "DIR",
            "help": "many files: write the outputs into DIR under their base names "
            "(created if missing)",
        },
    ),
    (
        ("--progress",),
        {
            "action": _NEGATABLE,
            "default": None,
            "help": "progress bar on stderr (default: only when stderr is a terminal)",
        },
    ),
    (("-q", "--quiet"), {"action": "store_true", "help": "no notices on stderr"}),
)
#: Each command's own options, after the shared ones.
_OWN: dict[str, tuple[Option, ...]] = {
    "encrypt": (
        (
            ("--work-factor",),
            {
                "metavar": "N",
                "type": _positive,
                "default": None,
                "help": "passphrase: scrypt's log2 N (default "
                f"{DEFAULT_WORK_FACTOR}: 256 MiB of memory; each step doubles "
                "memory and time)",
            },
        ),
    ),
    "decrypt": (
        (
            ("--max-work-factor",),
            {
                "metavar": "N",
                "type": _positive,
                "default": None,
                "help": "passphrase: accept a file's scrypt log2 N up to N "
                f"(default {MAX_WORK_FACTOR}: 1 GiB of memory)",
            },
        ),
        (
            ("--range",),
            {
                "metavar": "START:END",
                "type": parse_range,
                "default": None,
                "help": "only plaintext bytes START to END (END excluded; either may be left "
                "out, negative counts from the end): reads the header, the last segment and "
                "the segments that hold the range",
            },
        ),
    ),
}

#: Each command's one-line help and what its description says of many files.
_COMMANDS = {
    "encrypt": ("encrypt a file or a pipe", f"or each FILE into FILE{DEFAULT_SUFFIX}"),
    "decrypt": ("decrypt a file or a pipe", f"or each FILE{DEFAULT_SUFFIX} back into FILE"),
}
#: The usage lines: argparse would print the key options' group on one line of 130.
_USAGE = """\
%(prog)s [options] KEY [IN [OUT]]
       %(prog)s [options] KEY -o OUT [IN]
       %(prog)s [options] KEY (--suffix SUF | --output-dir DIR) FILE...
  KEY: -k PATH | --key-fd N | --key-name NAME | --key-serial N |
       -p | --passphrase-fd N | --passphrase-file PATH"""
#: The end of each command's --help, and the manual's EXAMPLES section.
EXAMPLES = {
    "encrypt": """\
examples:
  kstream keygen k.key                          a new key file, mode 0600
  kstream encrypt -k k.key report.pdf report.pdf.kst
  kstream encrypt -k k.key -o report.pdf.kst report.pdf
  tar c docs | kstream encrypt -k k.key | ssh host 'cat > docs.tar.kst'
  kstream encrypt -p notes.txt notes.txt.kst    a passphrase, asked twice
  kstream encrypt -k k.key --suffix .kst *.log  each FILE into FILE.kst
  kstream encrypt --key-name backup db.dump db.dump.kst
                                                a key in the kernel keyring""",
    "decrypt": """\
examples:
  kstream decrypt -k k.key report.pdf.kst report.pdf
  kstream decrypt -k k.key -o report.pdf report.pdf.kst
  ssh host 'cat docs.tar.kst' | kstream decrypt -k k.key | tar x
  kstream decrypt notes.txt.kst notes.txt       asks for the passphrase
  kstream decrypt -k k.key --suffix .kst *.kst  each FILE.kst back into FILE
  kstream decrypt --key-name backup db.dump.kst db.dump""",
}


def add_encrypt_parser(sub: Any, common: Any) -> None:
    """Register ``kstream encrypt`` on the top-level subparsers (a run of ``decrypt`` does
    not build this parser, nor this one that of ``decrypt``: each costs start-up time)."""
    _add_cipher_parser(sub, common, "encrypt")


def add_decrypt_parser(sub: Any, common: Any) -> None:
    """Register ``kstream decrypt`` on the top-level subparsers."""
    _add_cipher_parser(sub, common, "decrypt")


def _add_cipher_parser(sub: Any, common: Any, name: str) -> None:
    import argparse

    what, many = _COMMANDS[name]
    description = (
        f"{name.capitalize()} IN into OUT (each a path, or '-' for stdin or stdout),\n{many}."
    )
    p: argparse.ArgumentParser = sub.add_parser(
        name,
        help=what,
        description=description,
        parents=[common],
        usage=_USAGE,
        epilog=f"{EXAMPLES[name]}\n\n{tui.EXIT_CODES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    keys = p.add_mutually_exclusive_group()
    key_names = {names for names, _ in _KEYS}
    for names, settings in _options(name):
        if settings.get("action") == _NEGATABLE:
            settings = {**settings, "action": argparse.BooleanOptionalAction}
        (keys if names in key_names else p).add_argument(*names, **settings)


def _options(command: str) -> tuple[Option, ...]:
    """``command``'s options, in the order ``--help`` lists them."""
    return (*_IN_OUT, *_KEYS, *_REST, *_OWN[command])


def _dest(names: tuple[str, ...], settings: dict[str, Any]) -> str:
    """The attribute argparse gives the option: its ``dest``, else its first long name."""
    if "dest" in settings:
        return str(settings["dest"])
    long = [n for n in names if n.startswith("--")]
    return (long or list(names))[0].lstrip("-").replace("-", "_")


def defaults(command: str) -> dict[str, Any]:
    """What argparse leaves in the namespace for ``command``'s options when none is given."""
    values: dict[str, Any] = {}
    for names, settings in _options(command):
        if "nargs" in settings:  # the paths
            values[_dest(names, settings)] = []
        else:
            flag = settings.get("action") == "store_true"
            values[_dest(names, settings)] = settings.get("default", False if flag else None)
    return values


def plain_options(command: str) -> dict[str, tuple[str, Any]]:
    """The options :func:`read_plain` reads, by spelling: their attribute, and the value a
    flag sets, or the choices a value must be one of (empty: any value)."""
    plain: dict[str, tuple[str, Any]] = {}
    for names, settings in _options(command):
        dest, action = _dest(names, settings), settings.get("action")
        if action == "store_true":
            plain.update((name, (dest, True)) for name in names)
        elif action == _NEGATABLE:
            plain.update({names[0]: (dest, True), f"--no-{names[0][2:]}": (dest, False)})
        elif names[0].startswith("-") and "type" not in settings:
            plain.update((name, (dest, tuple(settings.get("choices", ())))) for name in names)
    return plain


def read_plain(command: str, words: Sequence[str]) -> dict[str, Any] | None:
    """What argparse makes of ``kstream COMMAND WORDS`` (``command``'s attributes), if the
    words are only paths and plain options (the module's docstring says which); None for a
    command line argparse must read."""
    plain = plain_options(command)
    values = defaults(command)
    given: set[str] = set()
    rest = iter(words)
    for word in rest:
        if word == "-" or not word.startswith("-"):
            values["paths"].append(word)
            continue
        if word not in plain or plain[word][0] in given:
            return None
        dest, takes = plain[word]
        given.add(dest)
        if isinstance(takes, bool):
            values[dest] = takes
            continue
        value = next(rest, None)
        if value is None or value.startswith("-") or (takes and value not in takes):
            return None
        values[dest] = value
    if len(given & {_dest(*key) for key in _KEYS}) > 1:
        return None
    return values
