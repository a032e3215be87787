"""The ``kstream`` command line.

Only argument handling, presentation and exit codes live here; all work is done through
the same coroutine API that library users call (``kstream.api``).
"""

from __future__ import annotations

import argparse
import asyncio
import binascii
import json
import os
import signal
import stat
import sys
import tempfile
import traceback
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, NoReturn

from kstream import __version__
from kstream.api import decrypt_file, encrypt_file, open_source
from kstream.backends import BACKEND_NAMES, CipherOptions
from kstream.bench.cli import add_bench_parser, cmd_bench
from kstream.engine.fdio import FdSource
from kstream.engine.iterate import Progress, read_exact
from kstream.errors import FormatError, Interrupted, KstreamError, UsageError
from kstream.format import HEADER_SIZE, IV_SIZE, Header
from kstream.keycli import add_key_parser, add_keyring_options, cmd_key, load_keyring_key
from kstream.keys import Key
from kstream.loop import loop_factory
from kstream.memory import tune_malloc
from kstream.segments import plaintext_size

EXIT_CODES = """\
exit status:
  0    success
  1    cryptographic or data error (not a kstream file, damaged header, failed check)
  2    usage error (bad arguments, unusable key, output exists, refused terminal)
  3    the requested backend is not available here
  4    input/output error (cannot read input, disk full, cannot write output)
  130  interrupted (SIGINT); 143 terminated (SIGTERM); 141 output pipe closed"""

EXIT_SIGPIPE = 141
EXIT_SIGTERM = 143


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one ``kstream: error:`` line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        _say("error", f"{message}; see '{self.prog} --help'")
        sys.exit(2)


def _say(kind: str, message: str) -> None:
    sys.stderr.write(f"kstream: {kind}: {message}\n")
    sys.stderr.flush()


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


def _load_key(args: argparse.Namespace) -> Key:
    if args.key_file is not None:
        return Key.from_file(args.key_file)
    if args.key_fd is not None:
        return Key.from_fd(args.key_fd)
    keyring_key = load_keyring_key(args)
    if keyring_key is not None:
        return keyring_key
    raise UsageError("no key given: use -k/--key-file PATH, --key-fd N, --key-name NAME or "
                     "--key-serial N")


def _add_cipher_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="IN", help="input file, or '-' for stdin")
    p.add_argument("output", metavar="OUT", help="output file, or '-' for stdout")
    keys = p.add_mutually_exclusive_group()
    keys.add_argument("-k", "--key-file", metavar="PATH",
                      help="key file: 16, 24 or 32 raw bytes, or the same as hex text")
    keys.add_argument("--key-fd", metavar="N", type=int,
                      help="read the key from inherited file descriptor N")
    add_keyring_options(keys)
    p.add_argument("--backend", choices=BACKEND_NAMES, default="auto",
                   help="crypto backend (default: auto = kernel if usable, else openssl)")
    p.add_argument("--driver", metavar="NAME",
                   help="kernel backend: use this ctr(aes) driver, e.g. ctr-aes-aesni")
    p.add_argument("--transfer", choices=("auto", "sendmsg", "splice", "sendfile"),
                   default="auto", help="kernel backend: how data enters the kernel")
    p.add_argument("--verify", action="store_true",
                   help="check every output byte of the kernel backend against OpenSSL")
    p.add_argument("--raw", action="store_true",
                   help="no header: bare AES-CTR, as 'openssl enc -aes-N-ctr'; needs --iv")
    p.add_argument("--iv", metavar="HEX", help="32 hex digits; only with --raw")
    p.add_argument("-f", "--force", action="store_true",
                   help="allow overwriting an existing OUT")
    p.add_argument("-j", "--jobs", type=_positive, metavar="N", default=None,
                   help="parallel ranges for a regular-file IN and a file OUT "
                   "(default: the number of CPUs)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: only when stderr is a terminal)")
    p.add_argument("-q", "--quiet", action="store_true", help="no notices on stderr")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="kstream",
        description="Encrypt and decrypt files and pipes with AES-CTR, streaming, through "
        "the Linux kernel crypto API (AF_ALG) or OpenSSL.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"kstream {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    # --debug is accepted before or after the command name.
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks on errors")

    for name, what in (("encrypt", "encrypt IN into OUT"), ("decrypt", "decrypt IN into OUT")):
        p = sub.add_parser(name, help=what, description=f"{what.capitalize()}.",
                           parents=[common],
                           epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
        _add_cipher_arguments(p)

    p = sub.add_parser("keygen", parents=[common],
                       help="create a random key file (mode 0600)")
    p.add_argument("output", metavar="OUT", help="new key file, or '-' for stdout (hex)")
    p.add_argument("--bits", type=int, choices=(128, 192, 256), default=128,
                   help="key size (default 128)")

    p = sub.add_parser("inspect", parents=[common],
                       help="show the header of a kstream file")
    p.add_argument("file", metavar="FILE", help="kstream file, or '-' for stdin")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("backends", parents=[common],
                       help="list backends, kernel drivers and what auto picks")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("selftest", parents=[common],
                       help="known-answer tests on every backend and driver")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    sub.add_parser("demo", parents=[common],
                       help="generate a key, encrypt and decrypt sample data, show it")
    add_key_parser(sub, common)
    add_bench_parser(sub, common)
    return parser


# --------------------------------------------------------------------------- running


async def _with_sigterm(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro``; SIGTERM cancels it (so cleanup runs) and becomes an exit of 143."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    terminated = False

    def on_sigterm() -> None:
        nonlocal terminated
        terminated = True
        task.cancel()

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        await coro
    except asyncio.CancelledError:
        if terminated:
            err = Interrupted("terminated; a partial output file was removed")
            err.exit_code = EXIT_SIGTERM
            raise err from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def _run(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` on uvloop (or asyncio's loop), mapping Ctrl-C to :class:`Interrupted`.

    On failure the runner is deliberately not closed: closing waits for worker threads, and
    one may sit in a blocking read of a pipe that never ends. :func:`entry` exits with
    ``os._exit`` so nothing waits for it.
    """
    runner = asyncio.Runner(loop_factory=loop_factory())
    try:
        runner.run(_with_sigterm(coro))
    except KeyboardInterrupt:
        raise Interrupted("interrupted; a partial output file was removed") from None
    runner.close()


def _make_progress(args: argparse.Namespace, total: int | None) -> tuple[Progress | None, Any]:
    enabled = args.progress if args.progress is not None else sys.stderr.isatty()
    if not enabled:
        return None, None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
               leave=False, dynamic_ncols=True)
    def progress(n: int) -> None:
        bar.update(n)

    return progress, bar


def _input_size(path: str) -> int | None:
    try:
        st = os.stat(path) if path != "-" else os.fstat(0)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def cmd_cipher(args: argparse.Namespace) -> int:
    encrypt = args.command == "encrypt"
    if args.iv is not None and not args.raw:
        raise UsageError("--iv is only allowed with --raw; kstream files get a random IV")
    iv = _parse_iv(args.iv) if args.iv is not None else None
    if args.raw and iv is None:
        raise UsageError("--raw needs --iv HEX (32 hex digits): raw output has no header")
    if encrypt and args.output == "-" and os.isatty(1):
        raise UsageError(
            "refusing to write ciphertext to a terminal; redirect stdout or give an output file"
        )
    if args.input != "-" and args.input == args.output:
        raise UsageError(f"input and output are the same file ('{args.input}')")
    key = _load_key(args)
    total = _input_size(args.input)
    if total is not None and not encrypt and not args.raw:
        total = max(total - HEADER_SIZE, 0)
    progress, bar = _make_progress(args, total)

    def notify(message: str) -> None:
        if not args.quiet:
            _say("notice", message)

    run = encrypt_file if encrypt else decrypt_file
    try:
        _run(run(
            0 if args.input == "-" else args.input,
            1 if args.output == "-" else args.output,
            key=key,
            backend=args.backend,
            force=args.force,
            raw=args.raw,
            iv=iv,
            verify=args.verify,
            options=CipherOptions(driver=args.driver, transfer=args.transfer),
            notify=notify,
            progress=progress,
            jobs=args.jobs,
        ))
    finally:
        key.wipe()
        if bar is not None:
            bar.close()
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    key = Key.generate(args.bits)
    try:
        if args.output == "-":
            if os.isatty(1):
                raise UsageError(
                    "refusing to print a key on a terminal; redirect stdout or give a file"
                )
            os.write(1, key.hex_text())
        else:
            key.save(args.output)
    finally:
        key.wipe()
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    async def read() -> tuple[Header, int]:
        source, owned_fd = await open_source(0 if args.file == "-" else args.file)
        try:
            data = await read_exact(source, HEADER_SIZE)
            if not data:
                raise FormatError("input is empty: not a kstream file")
            header = Header.parse(data)
            size = source.size_hint() if isinstance(source, FdSource) else None
            if size is None:
                size = 0
                while (got := (await source.read_parts(1 << 20))[1]):
                    size += got
            return header, size
        finally:
            if owned_fd is not None:
                os.close(owned_fd)

    result: list[tuple[Header, int]] = []

    async def go() -> None:
        result.append(await read())

    _run(go())
    header, body = result[0]
    info = {
        "format": "kstream",
        "version": header.version,
        "cipher": header.suite.label,
        "cipher_id": int(header.suite),
        "key_bits": header.suite.key_size * 8,
        "iv": header.iv.hex(),
        "authentication": header.auth_scheme.label,
        "auth_scheme": int(header.auth_scheme),
        "segment_size": header.auth_param,
        "header_size": HEADER_SIZE,
        "body_size": body,
        "plaintext_size": plaintext_size(body, header.auth_param),
    }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"format:          kstream version {info['version']}")
        print(f"cipher:          {info['cipher']} (needs a {info['key_bits']}-bit key)")
        print(f"iv:              {info['iv']}")
        print(f"authentication:  {info['authentication']} (scheme {info['auth_scheme']}), "
              f"segments of {header.auth_param} bytes")
        print(f"header:          {HEADER_SIZE} bytes")
        print(f"body:            {body} bytes")
        plain = info["plaintext_size"]
        print(f"plaintext:       {plain} bytes" if plain is not None else
              "plaintext:       unknown: the body size fits no plaintext (truncated or damaged)")
    return 0


def cmd_backends(args: argparse.Namespace) -> int:
    from kstream.backends.report import backends_report, format_backends_text

    report = backends_report()
    print(json.dumps(report, indent=2) if args.json else format_backends_text(report))
    return 0


def cmd_selftest(args: argparse.Namespace) -> int:
    from kstream.selftest import format_table, run_selftest

    report = run_selftest()
    print(json.dumps(report.to_json(), indent=2) if args.json else format_table(report))
    return 0 if report.ok else 1


SAMPLE = (
    b"kstream demo: this text is encrypted with AES-CTR, streamed in 63 KiB chunks,\n"
    b"and decrypted again. The ciphertext starts with a 32-byte header.\n"
)


def cmd_demo(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="kstream-demo-") as tmp:
        key_path = os.path.join(tmp, "demo.key")
        plain = os.path.join(tmp, "sample.txt")
        enc = os.path.join(tmp, "sample.txt.kst")
        dec = os.path.join(tmp, "sample.decrypted.txt")
        data = SAMPLE * 4000  # ~560 KiB: several 63 KiB chunks
        with open(plain, "wb") as out:
            out.write(data)
        Key.generate(256).save(key_path)
        key = Key.from_file(key_path)
        used: list[str] = []

        async def go() -> None:
            await encrypt_file(plain, enc, key=key, notify=used.append)
            await decrypt_file(enc, dec, key=key, notify=used.append)

        _run(go())
        with open(enc, "rb") as f:
            head = f.read(HEADER_SIZE + 16)
        with open(dec, "rb") as f:
            back = f.read()
        print(f"key:         {key!r}, saved to a 0600 key file")
        print(f"plaintext:   {len(data)} bytes, starting {data[:40]!r}")
        print(f"ciphertext:  {os.path.getsize(enc)} bytes = {HEADER_SIZE}-byte header + "
              "AES-CTR body in authenticated segments (20 bytes of framing and tag each)")
        print(f"header:      {head[:HEADER_SIZE].hex(' ', 4)}")
        print(f"body starts: {head[HEADER_SIZE:].hex(' ', 4)}")
        for line in dict.fromkeys(used):
            print(f"note:        {line}")
        ok = back == data
        print(f"round trip:  {'OK, decrypted text equals the original' if ok else 'MISMATCH'}")
        tampered = os.path.join(tmp, "tampered.kst")
        with open(enc, "rb") as src, open(tampered, "wb") as dst:
            blob = bytearray(src.read())
            blob[HEADER_SIZE + 1000] ^= 1  # flip one bit of the ciphertext
            dst.write(blob)
        try:
            _run(decrypt_file(tampered, os.path.join(tmp, "t.out"), key=key,
                              notify=lambda _: None))
            print("tampering:   NOT DETECTED")
            return 1
        except KstreamError as exc:
            print(f"tampering:   one flipped bit is refused: {exc}")
        return 0 if ok else 1


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
}


def _silence_stdout() -> None:
    """After EPIPE on stdout, point fd 1 at /dev/null so no later flush can complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    except OSError:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    tune_malloc()  # before any worker thread exists (see kstream.memory)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return COMMANDS[args.command](args)
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_SIGPIPE
    except KstreamError as exc:
        if args.debug:
            traceback.print_exc()
        _say("error", str(exc))
        return exc.exit_code
    except Exception as exc:
        # Not a user mistake: a bug or an unexpected OS condition. Still one line unless
        # --debug, and never key material (keys are not part of any exception text).
        if args.debug:
            traceback.print_exc()
        _say("error", f"unexpected {type(exc).__name__}: {exc}; rerun with --debug and "
             "report this")
        return 70


def entry() -> NoReturn:
    """Console-script entry: exit without waiting for worker threads stuck in pipe reads."""
    code = main()
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        _silence_stdout()
        code = code or EXIT_SIGPIPE
    sys.stderr.flush()
    os._exit(code)
