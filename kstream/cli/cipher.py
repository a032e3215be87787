"""``kstream encrypt`` and ``decrypt``: the commands that read and write kstream data.

Only argument handling lives here; the work is done by the same coroutine API that library
users call (:mod:`kstream.api`), so the tool and the library cannot disagree.
"""

from __future__ import annotations

import argparse
import binascii
import os
import stat
from typing import Any

from kstream.atomic import check_output_path
from kstream.backends.base import BACKEND_NAMES, CipherOptions
from kstream.cli import tui
from kstream.cli.many import (
    DEFAULT_SUFFIX,
    FILES_IN_FLIGHT,
    SMALL_FILES_IN_FLIGHT,
    directory_input,
    notifier,
    run_files,
    wipe_secrets,
)
from kstream.cli.outputs import replace_refusal
from kstream.engine.raw import check_iv, check_raw
from kstream.errors import UsageError
from kstream.format import HEADER_SIZE, IV_SIZE, header_size
from kstream.keys.key import Key, readable_by_others
from kstream.keys.passphrase import (
    DEFAULT_WORK_FACTOR,
    MAX_WORK_FACTOR,
    PassphraseArg,
    read_passphrase_fd,
    read_passphrase_file,
)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _parse_iv(text: str) -> bytes:
    compact = "".join(text.split())
    if len(compact) != 2 * IV_SIZE:
        raise UsageError(f"--iv must be {2 * IV_SIZE} hex digits, got {len(compact)} characters")
    try:
        return binascii.unhexlify(compact)
    except (binascii.Error, ValueError):
        raise UsageError("--iv must be hex digits (0-9, a-f)") from None


def _raw_iv(text: str | None, encrypt: bool) -> bytes | None:
    """``--iv``: hex, or ``random``: 16 fresh bytes from the OS CSPRNG (see :func:`_show_iv`)."""
    if text is None:
        return None
    if text.strip().lower() != "random":
        return _parse_iv(text)
    if not encrypt:
        raise UsageError(
            "--iv random only works when encrypting; to decrypt, give the IV "
            "that encryption printed"
        )
    return os.urandom(IV_SIZE)


def _show_iv(text: str | None, iv: bytes | None) -> None:
    """Print a random IV as ``kstream: iv: HEX`` once the key has loaded, before any output.

    Printed whatever ``-q`` says, since the output cannot be decrypted without it; one line
    with a fixed prefix, so a script takes it with ``sed -n 's/^kstream: iv: //p'`` from
    stderr. If the run then fails, its output is removed and the IV was never used.
    """
    if text is not None and iv is not None and text.strip().lower() == "random":
        tui.say("iv", iv.hex())


def _load_key(args: argparse.Namespace) -> Key:
    if args.key_file is not None:
        key = Key.from_file(args.key_file)
        loose = readable_by_others(args.key_file)
        if loose is not None:
            tui.warning(loose, quiet=args.quiet)
        return key
    if args.key_fd is not None:
        from kstream.cli.descriptors import refuse_input_descriptor

        refuse_input_descriptor(args.key_fd, "--key-fd", "key", args)
        return Key.from_fd(args.key_fd)
    from kstream.cli.key import load_keyring_key  # the keyring: only for a key kept there

    keyring_key = load_keyring_key(args)
    if keyring_key is not None:
        return keyring_key
    raise UsageError(
        "no key given: use -k/--key-file PATH, --key-fd N, --key-name NAME, "
        "--key-serial N or -p/--passphrase"
    )


def unlock(args: argparse.Namespace) -> tuple[Key | None, PassphraseArg | None, int | None]:
    """The run's key or passphrase, and the work factor option (``--work-factor`` when
    encrypting, ``--max-work-factor`` when decrypting). Encryption asks for a passphrase
    now; decryption only once a header shows a file needs one."""
    encrypt = args.command == "encrypt"
    wants_phrase = (
        args.passphrase or args.passphrase_fd is not None or args.passphrase_file is not None
    )
    factor = getattr(args, "work_factor" if encrypt else "max_work_factor")
    if factor is not None and _key_given(args):
        option = "--work-factor" if encrypt else "--max-work-factor"
        raise UsageError(f"{option} applies to a passphrase, not to a key")
    check_raw(args.raw, keyed=not wants_phrase)
    passphrase = _passphrase(args, encrypt)
    if passphrase is not None and args.progress is not False and os.isatty(2):
        import kstream.keys.passphrase  # (the module: its names are imported above)

        kstream.keys.passphrase.SLOW_WORK = tui.status_line  # a slow scrypt shows it is working
    return (_load_key(args) if passphrase is None else None), passphrase, factor


def _key_given(args: argparse.Namespace) -> bool:
    return any(
        getattr(args, name, None) is not None
        for name in ("key_file", "key_fd", "key_name", "key_serial")
    )


def _passphrase(args: argparse.Namespace, encrypt: bool) -> PassphraseArg | None:
    """The passphrase for this run, or None for a key. Encryption asks now (twice);
    decryption without a key asks only once the header says the file needs a passphrase.
    (The descriptor check and the prompts are imported only for a run that needs them.)"""
    if args.passphrase_fd is not None:
        from kstream.cli.descriptors import refuse_input_descriptor

        refuse_input_descriptor(args.passphrase_fd, "--passphrase-fd", "passphrase", args)
        return read_passphrase_fd(args.passphrase_fd)
    if args.passphrase_file is not None:
        phrase = read_passphrase_file(args.passphrase_file)
        loose = readable_by_others(args.passphrase_file, "passphrase file")
        if loose is not None:
            tui.warning(loose, quiet=args.quiet)
        return phrase
    if encrypt:
        return _ask(confirm=True) if args.passphrase else None
    if not args.raw and (args.passphrase or not _key_given(args)):
        return lambda: _ask(confirm=False)
    return None


def _ask(*, confirm: bool) -> bytearray:
    from kstream.cli.prompts import ask_passphrase

    return ask_passphrase(confirm=confirm)


# --------------------------------------------------------------------------- parser


#: Sets the default of ``--backend``, for hosts where the answer never changes (a container
#: without AF_ALG): choosing there, even ``auto``, also silences the fallback notice.
BACKEND_ENV = "KSTREAM_BACKEND"


def backend_choice(flag: str | None) -> tuple[str, str]:
    """The run's backend name and who chose it: ``--backend``, else :data:`BACKEND_ENV`,
    else nobody (``""``); a bad value in the environment is a usage error naming it."""
    if flag is not None:
        return flag, "--backend"
    value = os.environ.get(BACKEND_ENV, "").strip()
    if not value:
        return "auto", ""
    if value not in BACKEND_NAMES:
        raise UsageError(
            f"the environment variable {BACKEND_ENV}='{value}' is not a backend; "
            "set it to one of "
            f"{', '.join(BACKEND_NAMES)}, or unset it"
        )
    return value, BACKEND_ENV


def _serial(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a key serial number") from None


def _add_cipher_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "paths",
        metavar="FILE",
        nargs="*",
        help="IN OUT: input and output, each a path or '-' (stdin/stdout; "
        "none at all: stdin to stdout); or FILE... with --suffix/--output-dir, "
        "one output per FILE (one FILE alone is the same as --suffix .kst)",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        dest="output_path",
        help="write to OUT (a path or '-'); the one FILE, if any, is IN (default: stdin)",
    )
    keys = p.add_mutually_exclusive_group()
    keys.add_argument(
        "-k",
        "--key-file",
        metavar="PATH",
        help="key file: 16, 24 or 32 raw bytes, or the same as hex text",
    )
    keys.add_argument(
        "--key-fd", metavar="N", type=int, help="read the key from inherited file descriptor N"
    )
    # The keyring's options (kstream.cli.key loads such a key).
    keys.add_argument(
        "--key-name",
        metavar="NAME",
        help="key kstream:NAME from the kernel keyring (session keyring, then "
        "user keyring); implies the kernel backend",
    )
    keys.add_argument(
        "--key-serial",
        metavar="N",
        type=_serial,
        help="key with serial N from the kernel keyring; implies the kernel backend",
    )
    keys.add_argument(
        "-p",
        "--passphrase",
        action="store_true",
        help="a passphrase, asked on the terminal (/dev/tty, no echo); "
        "decrypt asks by itself when the file needs one",
    )
    keys.add_argument(
        "--passphrase-fd",
        metavar="N",
        type=int,
        help="read the passphrase (its first line) from file descriptor N",
    )
    keys.add_argument(
        "--passphrase-file", metavar="PATH", help="read the passphrase from the first line of PATH"
    )
    p.add_argument(
        "--backend",
        choices=BACKEND_NAMES,
        default=None,
        help=f"crypto backend (default: ${BACKEND_ENV} if set, else auto = kernel "
        "if usable, else openssl, with a notice)",
    )
    p.add_argument(
        "--driver",
        metavar="NAME",
        help="kernel backend: use this ctr(aes) driver, e.g. ctr-aes-aesni",
    )
    p.add_argument(
        "--transfer",
        choices=("auto", "sendmsg", "splice", "sendfile"),
        default="auto",
        help="kernel backend: how data enters the kernel",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="check every output byte of the kernel backend against OpenSSL",
    )
    p.add_argument(
        "--raw",
        action="store_true",
        help="no header: bare AES-CTR, as 'openssl enc -aes-N-ctr'; needs --iv",
    )
    p.add_argument(
        "--iv",
        metavar="HEX|random",
        help="32 hex digits; only with --raw. Never reuse an IV with the same key: "
        "two raw outputs under one key and IV reveal the XOR of their plaintexts, "
        "and a raw IV at or just above a kstream file's IV (its header is public) "
        "reuses that file's keystream. 'random' (encrypt only) picks a fresh IV and "
        "prints it on stderr as 'kstream: iv: HEX' (also with -q)",
    )
    p.add_argument("-f", "--force", action="store_true", help="allow overwriting an existing OUT")
    p.add_argument(
        "-j",
        "--jobs",
        type=_positive,
        metavar="N",
        default=None,
        help="parallel ranges for a regular-file IN and a file OUT (default: the "
        "number of CPUs); with many files: files in flight (default: "
        f"{FILES_IN_FLIGHT}, or {SMALL_FILES_IN_FLIGHT} when the files average "
        "under 1 MiB)",
    )
    p.add_argument(
        "--suffix",
        metavar="SUF",
        help="many files: encrypting writes FILE+SUF, decrypting FILE without SUF "
        f"(default {DEFAULT_SUFFIX})",
    )
    p.add_argument(
        "--output-dir",
        metavar="DIR",
        help="many files: write the outputs into DIR under their base names (created if missing)",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: only when stderr is a terminal)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no notices on stderr")


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


def add_encrypt_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``kstream encrypt`` on the top-level subparsers (a run of ``decrypt`` does
    not build this parser, nor this one that of ``decrypt``: each costs start-up time)."""
    p = _add_cipher_parser(sub, common, "encrypt")
    p.add_argument(
        "--work-factor",
        metavar="N",
        type=_positive,
        default=None,
        help="passphrase: scrypt's log2 N (default "
        f"{DEFAULT_WORK_FACTOR}: 256 MiB of memory; each step doubles "
        "memory and time)",
    )


def add_decrypt_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``kstream decrypt`` on the top-level subparsers."""
    p = _add_cipher_parser(sub, common, "decrypt")
    p.add_argument(
        "--max-work-factor",
        metavar="N",
        type=_positive,
        default=None,
        help="passphrase: accept a file's scrypt log2 N up to N "
        f"(default {MAX_WORK_FACTOR}: 1 GiB of memory)",
    )
    from kstream.cli.partial import parse_range

    p.add_argument(
        "--range",
        metavar="START:END",
        type=parse_range,
        default=None,
        help="only plaintext bytes START to END (END excluded; either may be left out, "
        "negative counts from the end): reads the header, the last segment and the "
        "segments that hold the range",
    )


def _add_cipher_parser(
    sub: Any, common: argparse.ArgumentParser, name: str
) -> argparse.ArgumentParser:
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
    _add_cipher_arguments(p)
    return p


# --------------------------------------------------------------------------- commands


def _input_size(path: str) -> int | None:
    try:
        st = os.stat(path) if path != "-" else os.fstat(0)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _header_size_of(path: str) -> int:
    """For the progress bar's total: a passphrase file's header is longer."""
    try:
        with open(path, "rb") as f:
            return header_size(f.read(HEADER_SIZE))
    except OSError:
        return HEADER_SIZE


def cmd_cipher(args: argparse.Namespace) -> int:
    """``IN OUT`` as always, ``-o OUT [IN]`` as age has it, nothing for stdin to stdout;
    many-files mode with --suffix/--output-dir or one lone FILE."""
    paths = args.paths
    args.backend, args.backend_chosen = backend_choice(args.backend)
    many = args.suffix is not None or args.output_dir is not None
    if args.output_path is not None:
        if many:
            raise UsageError(
                "-o/--output names one output; with --suffix or --output-dir each FILE gets its own"
            )
        if len(paths) > 1:
            raise UsageError(
                "-o/--output takes one input: give IN after it (or none for "
                "stdin); for several files use --suffix or --output-dir"
            )
        args.input, args.output = (paths[0] if paths else "-"), args.output_path
        return _cmd_one(args)
    if getattr(args, "range", None) is not None and (many or len(paths) == 1):
        raise UsageError("--range decrypts one IN into one OUT: give both (OUT may be '-')")
    if many or (len(paths) == 1 and paths[0] != "-"):
        if not paths:
            raise UsageError("--suffix and --output-dir need the FILEs to work on")
        return run_files(args, unlock, CipherOptions(driver=args.driver, transfer=args.transfer))
    if len(paths) > 2:
        raise UsageError("give IN and OUT, '-o OUT IN', or FILE... with --suffix or --output-dir")
    args.input, args.output = paths if len(paths) == 2 else ("-", "-")  # none, or '-'
    return _cmd_one(args)


def _cmd_one(args: argparse.Namespace) -> int:
    encrypt = args.command == "encrypt"
    iv = check_iv(_raw_iv(args.iv, encrypt), args.raw)
    if encrypt and args.output == "-":
        tui.refuse_terminal(
            1, "refusing to write ciphertext to a terminal; redirect stdout or give an output file"
        )
    if not encrypt and args.input == "-":  # it would wait for typing that can never be right
        tui.refuse_terminal(
            0, "refusing to read ciphertext from a terminal; redirect stdin or give an input file"
        )
    if args.input != "-" and args.input == args.output:
        raise UsageError(f"input and output are the same file ('{args.input}')")
    if args.input != "-" and os.path.isdir(args.input):
        raise UsageError(f"input '{args.input}' {directory_input(encrypt)}")
    if (
        not args.raw
        and args.output != "-"
        and (
            refusal := replace_refusal(
                args.output, encrypt=encrypt, src=None if args.input == "-" else args.input
            )
        )
        is not None
    ):
        raise refusal
    # Before asking: a passphrase typed twice for nothing annoys. True for stdout, a pipe
    # or a device: written directly, where a new file is written atomically.
    to_stream = args.output == "-" or check_output_path(
        args.output,
        force=args.force,
        no_terminal=encrypt,
        src=args.input if args.input != "-" else None,
    )
    key, passphrase, factor = unlock(args)
    _show_iv(args.iv, iv)
    options = CipherOptions(driver=args.driver, transfer=args.transfer)
    try:
        if getattr(args, "range", None) is not None:
            from kstream.cli.partial import decrypt_range
            from kstream.cli.runner import run_sync

            run_sync(lambda: decrypt_range(args, key, passphrase, factor, options))
            return 0
        if not to_stream and _run_small(args, key, passphrase, factor, iv, options):
            return 0
        _run_async(args, key, passphrase, factor, iv, options)
    finally:
        wipe_secrets(key, passphrase)
    return 0


def _run_async(
    args: argparse.Namespace,
    key: Key | None,
    passphrase: PassphraseArg | None,
    factor: int | None,
    iv: bytes | None,
    options: CipherOptions,
) -> None:
    """Any run through the coroutine API, with a progress bar where one is wanted."""
    encrypt = args.command == "encrypt"
    total = _input_size(args.input)
    if total is not None and not encrypt and not args.raw:
        total = max(total - _header_size_of(args.input), 0)
    # Imported here: --help, keygen and inspect must not pay for asyncio and OpenSSL.
    from kstream.api import Session
    from kstream.cli.runner import run

    session = Session(
        key=key,
        passphrase=passphrase,
        work_factor=factor if encrypt else None,
        max_work_factor=None if encrypt else factor,
        backend=args.backend,
        verify=args.verify,
        options=options,
        notify=notifier(args),
    )
    transform = session.encrypt_file if encrypt else session.decrypt_file
    with tui.progress_bar(args.progress, total, stdout_data=args.output == "-") as progress:
        run(
            transform(
                0 if args.input == "-" else args.input,
                1 if args.output == "-" else args.output,
                force=args.force,
                jobs=args.jobs,
                progress=progress,
                raw=args.raw,
                iv=iv,
            )
        )


def _run_small(
    args: argparse.Namespace,
    key: Key | None,
    passphrase: PassphraseArg | None,
    factor: int | None,
    iv: bytes | None,
    options: CipherOptions,
) -> bool:
    """Run a small regular file into a new file (the caller has checked that the output is
    not a stream) without an event loop (see :mod:`kstream.engine.small`); False, having
    done nothing, for any other run. A run that asks for a progress bar or a kernel
    transfer by name keeps the async path, which is what serves those."""
    if args.input == "-" or args.progress or options.transfer != "auto":
        return False
    from kstream.engine.small import process_small_file, small_input

    if not small_input(args.input):
        return False
    from kstream.cli.runner import run_sync
    from kstream.engine.plan import RunOptions
    from kstream.keys.unlock import make_secret

    encrypt = args.command == "encrypt"
    secret = make_secret(key, passphrase, factor if encrypt else None, None if encrypt else factor)
    run = RunOptions(
        notify=notifier(args), backend=args.backend, options=options, verify=args.verify
    )
    return run_sync(  # False: it grew, the caller streams it
        lambda: process_small_file(
            encrypt, args.input, args.output, secret, run, raw_iv=iv, force=args.force
        )
    )
