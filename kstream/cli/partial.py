"""Commands that decrypt part of a file: ``kstream decrypt --range START:END``, and the
check behind ``kstream inspect``'s size when a key is given.

Both open the file as :func:`kstream.open` does: the header, then the last segment, whose
tag authenticates the plaintext's size (and so the key and the header), then only the
segments that hold the range. Each segment is checked before any of its bytes is written,
with ``decrypt``'s words for a damaged one; the output is atomic like ``decrypt``'s (a path
appears complete or not at all).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kstream.backends.base import CipherOptions
from kstream.cli.many import notifier
from kstream.errors import UsageError
from kstream.keys.key import Key
from kstream.keys.passphrase import PassphraseArg

if TYPE_CHECKING:
    import argparse


def decrypt_range(
    args: argparse.Namespace,
    key: Key | None,
    passphrase: PassphraseArg | None,
    factor: int | None,
    options: CipherOptions,
) -> None:
    """Write plaintext bytes ``args.range`` of ``args.input`` to ``args.output``."""
    if args.raw:
        raise UsageError(
            "--range needs a kstream file: raw data has no authenticated segments; "
            "decrypt it whole and cut the plaintext"
        )
    if args.input == "-":
        raise UsageError("--range reads IN at offsets: give a file, not stdin")
    from kstream.fileobj.ends import PathOutput
    from kstream.fileobj.opener import open_file

    with open_file(
        args.input,
        key=key,
        passphrase=passphrase,
        max_work_factor=factor,
        backend=args.backend,
        options=options,
        notify=notifier(args),
        cache_segments=1,
        read_ahead=False,  # only the segments of the range are read
    ) as f:
        start, stop, _ = slice(*args.range).indices(f.size)
        output = PathOutput(
            "/dev/stdout" if args.output == "-" else args.output,
            force=args.force,
            no_terminal=False,
        )
        try:
            pos, segment = start, f.segment_size
            while pos < stop:  # a segment at a time: each checked, then written
                end = min(stop, (pos // segment + 1) * segment)
                output.write(f.read_at(pos, end - pos))
                pos = end
            output.finish()
        except BaseException:
            output.abort()
            raise


def verified_size(
    args: argparse.Namespace,
    key: Key | None,
    passphrase: PassphraseArg | None,
    factor: int | None,
) -> int:
    """The plaintext size of ``args.file``, authenticated by its last segment's tag under
    the key (raises what ``decrypt`` would say if it does not verify)."""
    if args.file == "-":
        raise UsageError("inspect with a key reads the file at offsets: give a file, not stdin")
    from kstream.fileobj.opener import open_file

    with open_file(
        args.file,
        key=key,
        passphrase=passphrase,
        max_work_factor=factor,
        backend=getattr(args, "backend", None) or "auto",
        notify=notifier(args),
        cache_segments=1,
    ) as f:
        return f.size


__all__ = ["decrypt_range", "verified_size"]
