"""``kstream encrypt`` and ``decrypt``: the commands that read and write kstream data.

Only the handling of their arguments lives here (the options themselves are in
:mod:`~kstream.cli.cipher_args`); the work is done by the same coroutine API that library
users call (:mod:`kstream.api`), so the tool and the library cannot disagree.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

from kstream.atomic import check_output_path
from kstream.backends.base import BACKEND_NAMES, CipherOptions
from kstream.cli import tui
from kstream.cli.cipher_args import BACKEND_ENV
from kstream.cli.many import directory_input, notifier, run_files, wipe_secrets
from kstream.cli.outputs import replace_refusal
from kstream.engine.raw import check_iv, check_raw
from kstream.errors import UsageError
from kstream.format import HEADER_SIZE, IV_SIZE, header_size
from kstream.keys.key import Key, readable_by_others
from kstream.keys.passphrase import PassphraseArg, read_passphrase_fd, read_passphrase_file

if TYPE_CHECKING:
    import argparse


def _parse_iv(text: str) -> bytes:
    compact = "".join(text.split())
    if len(compact) != 2 * IV_SIZE:
        raise UsageError(f"--iv must be {2 * IV_SIZE} hex digits, got {len(compact)} characters")
    try:
        return bytes.fromhex(compact)
    except ValueError:
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


# --------------------------------------------------------------------------- backend


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
