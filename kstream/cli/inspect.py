"""``kstream inspect``: a kstream file's header, and whether its body is framed as intact.

No key and no cryptography: the header is parsed and the body's frame words are followed
from segment to segment (:func:`kstream.format.walk_frames`), with plain reads. So the
command starts as fast as ``--help`` (neither asyncio nor OpenSSL is imported), reads a
regular file a few bytes per segment whatever its size, and still tells a truncated or
appended-to file from an intact one, in the words decryption would use. What it cannot
tell is whether the contents were modified: that needs the key (``kstream decrypt``).
"""

from __future__ import annotations

import argparse
import json
import os
import stat
from collections.abc import Callable
from typing import Any

from kstream.errors import FormatError, KstreamError, io_errors
from kstream.format import (
    FRAME_SIZE,
    HEADER_SIZE,
    OVERHEAD,
    BodyLayout,
    Header,
    header_size,
    walk_frames,
)


def add_inspect_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``kstream inspect`` on the top-level subparsers."""
    p = sub.add_parser(
        "inspect",
        parents=[common],
        help="show a kstream file's header and check its segment layout",
        description="Show the header of a kstream file and follow its "
        "segments' length words (no key needed): a truncated file or one "
        "with data appended is reported as decrypt would, with exit status 1. "
        "Whether the contents were modified only decryption can tell.",
    )
    p.add_argument("file", metavar="FILE", help="kstream file, or '-' for stdin")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    keys = p.add_mutually_exclusive_group()
    keys.add_argument("-k", "--key-file", metavar="PATH", help="also check the size with this key")
    keys.add_argument("--key-name", metavar="NAME", help="... with key kstream:NAME (keyring)")
    keys.add_argument("--key-serial", metavar="N", type=int, help="... with the key of serial N")
    keys.add_argument("--passphrase-file", metavar="PATH", help="... with this passphrase")
    p.add_argument("--backend", choices=("auto", "kernel", "openssl"), default=None)
    # What kstream.cli.cipher.unlock reads besides the options above.
    p.set_defaults(key_fd=None, passphrase=False, passphrase_fd=None, raw=False, progress=False)
    p.set_defaults(max_work_factor=None, quiet=False)


def _read_up_to(fd: int, n: int, name: str) -> bytes:
    """``n`` bytes, or fewer only at the end of the input."""
    out = bytearray()
    with io_errors("read", name):
        while len(out) < n and (got := os.read(fd, n - len(out))):
            out += got
    return bytes(out)


def _header(fd: int, name: str) -> Header:
    data = _read_up_to(fd, HEADER_SIZE, name)
    if not data:
        raise FormatError("input is empty: not a kstream file")
    if (size := header_size(data)) > len(data) == HEADER_SIZE:
        data += _read_up_to(fd, size - HEADER_SIZE, name)
    return Header.parse(data)


def _walk_file(fd: int, name: str, segment: int) -> tuple[int, Callable[[], BodyLayout]]:
    """A regular file: its body size, and the walk over it by positioned reads."""
    with io_errors("read", name):
        base = os.lseek(fd, 0, os.SEEK_CUR)
        body = max(os.fstat(fd).st_size - base, 0)

    def word_at(offset: int) -> bytes:
        with io_errors("read", name):
            return os.pread(fd, FRAME_SIZE, base + offset)

    return body, lambda: walk_frames(body, segment, word_at)


def _walk_stream(fd: int, name: str, segment: int) -> tuple[int, Callable[[], BodyLayout]]:
    """A pipe or terminal: read it through once, one ``S + 20``-byte unit at a time, keeping
    each unit's first word until a word ends the chain (a last segment, or a damaged word)."""
    unit = segment + OVERHEAD
    words: dict[int, bytes] = {}
    body, chained = 0, True
    while chunk := _read_up_to(fd, unit, name):
        if chained:
            words[body] = chunk[:FRAME_SIZE]
            word = int.from_bytes(words[body].ljust(FRAME_SIZE, b"\0"), "big")
            chained = word == segment  # not last, and a full segment: another follows
        body += len(chunk)
    return body, lambda: walk_frames(body, segment, lambda offset: words.get(offset, b""))


def _inspected(fd: int, name: str) -> tuple[Header, int, BodyLayout | FormatError]:
    """The header at the start of ``fd``, the size of the body after it, and what its frame
    words say: the layout, or the error decryption would meet."""
    header = _header(fd, name)
    with io_errors("read", name):
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    walk = _walk_file if regular else _walk_stream
    body, run = walk(fd, name, header.auth_param)
    try:
        return header, body, run()
    except FormatError as exc:
        return header, body, exc


def cmd_inspect(args: argparse.Namespace) -> int:
    """Print the header and the layout; a damaged layout is printed too, then raised (exit 1),
    so that ``kstream inspect FILE && ...`` does not go on with a damaged file."""
    if args.file == "-":
        header, body, layout = _inspected(0, "stdin")
    else:
        with io_errors("open input", f"'{args.file}'"):
            fd = os.open(args.file, os.O_RDONLY | os.O_CLOEXEC)
        try:
            header, body, layout = _inspected(fd, f"input '{args.file}'")
        finally:
            os.close(fd)
    intact = isinstance(layout, BodyLayout)
    verified: BaseException | bool | None = None
    if intact and any(getattr(args, n) is not None for n in KEY_OPTIONS):
        verified = _verify(args)
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
        "header_size": header.size,
        "kdf": None
        if header.kdf is None
        else {
            "name": "scrypt",
            "log2_n": header.kdf.log2n,
            "r": header.kdf.r,
            "p": header.kdf.p,
            "salt": header.kdf.salt.hex(),
            "memory": header.kdf.memory,
        },
        "body_size": body,
        "segments": layout.segments if isinstance(layout, BodyLayout) else None,
        "plaintext_size": layout.plaintext if isinstance(layout, BodyLayout) else None,
        #: None for an intact layout, else what decryption would say about it.
        "damage": None if intact else str(layout),
        #: With a key: whether the last segment verified (the size is then authentic).
        "size_verified": None if verified is None else not isinstance(verified, Exception),
    }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_text(header, info)
    if isinstance(layout, FormatError):
        raise layout
    if isinstance(verified, Exception):
        raise verified
    return 0


#: The options that give ``inspect`` a key (``args`` attributes).
KEY_OPTIONS = ("key_file", "key_name", "key_serial", "passphrase_file")


def _verify(args: argparse.Namespace) -> BaseException | bool:
    """True if the file's last segment verifies with the key the options give, else the
    error ``decrypt`` would meet (raised once the rest has been printed)."""
    from kstream.cli.cipher import backend_choice, unlock

    args.command = "decrypt"
    args.backend, args.backend_chosen = backend_choice(args.backend)
    from kstream.cli.many import wipe_secrets
    from kstream.cli.partial import verified_size

    key, passphrase, factor = unlock(args)
    try:
        verified_size(args, key, passphrase, factor)
    except KstreamError as exc:
        return exc
    finally:
        wipe_secrets(key, passphrase)
    return True


def _print_text(header: Header, info: dict[str, Any]) -> None:
    print(f"format:          kstream version {info['version']}")
    print(f"cipher:          {info['cipher']} (needs a {info['key_bits']}-bit key)")
    print(f"iv:              {info['iv']}")
    print(
        f"authentication:  {info['authentication']} (scheme {info['auth_scheme']}), "
        f"segments of {header.auth_param} bytes"
    )
    if header.kdf is not None:
        kdf = header.kdf
        print(f"passphrase:      {kdf.label}: {kdf.memory >> 20} MiB of memory to derive the key")
        print(f"salt:            {kdf.salt.hex()}")
    else:
        print("key:             a key (key file or keyring), not a passphrase")
    print(f"header:          {header.size} bytes")
    if info["damage"] is None:
        count = info["segments"]
        print(
            f"body:            {info['body_size']} bytes in {count} "
            f"segment{'s' if count != 1 else ''}, framed as intact"
        )
        how = {
            None: "decrypting authenticates them",
            True: "authentic: the last segment verified with the key",
            False: "NOT verified: see the error",
        }[info["size_verified"]]
        print(f"plaintext:       {info['plaintext_size']} bytes ({how})")
    else:
        print(f"body:            {info['body_size']} bytes, damaged (see the error)")
        print("plaintext:       unknown")


__all__ = ["add_inspect_parser", "cmd_inspect"]
