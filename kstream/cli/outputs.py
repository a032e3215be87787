"""The overwrite rule: which existing files a run may replace, whatever ``--force`` says.

``kstream encrypt a.txt b.txt`` is how the tool has always been called (IN OUT), and it is
also what a shell makes of ``kstream encrypt *.txt`` in a folder of two files, where the
user meant both as inputs. So a run never replaces what looks like the other side's input:
``encrypt`` never replaces an existing file that is not kstream ciphertext, and ``decrypt``
never replaces one that is. Overwriting that is plausibly meant (new ciphertext over old,
new plaintext over old) still works with ``--force``. Raw mode (``--raw``) has no header to
tell ciphertext by, so only ``--force`` guards it.
"""

from __future__ import annotations

import contextlib
import os
import stat

from kstream.atomic import own_descriptor
from kstream.errors import UsageError
from kstream.format import MAGIC


def is_ciphertext(path: str) -> bool | None:
    """Whether the regular file ``path`` starts like a kstream file; None if it is not a
    regular file or cannot be read (no rule applies to it here)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a device is never opened for this
            return None
        # Non-blocking and checked again: a FIFO swapped in meanwhile must not hang it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.pread(fd, len(MAGIC), 0) == MAGIC
    except OSError:
        return None
    finally:
        os.close(fd)


def replace_refusal(path: str, *, encrypt: bool, src: str | None = None) -> UsageError | None:
    """The error for an existing ``path`` that this run must not replace, else None (also
    when ``path`` is the input ``src`` itself, which the output check words better)."""
    if own_descriptor(path) is not None:  # /dev/stdout, /dev/fd/N: opened by the shell
        return None
    with contextlib.suppress(OSError):
        if src is not None and os.path.samefile(src, path):
            return None
    ciphertext = is_ciphertext(path)
    if ciphertext is not None and ciphertext != encrypt:
        what, command = ("is not", "encrypt") if encrypt else ("is", "decrypt")
        return UsageError(
            f"output '{path}' exists and {what} kstream ciphertext: {command} does not "
            "replace it, even with --force (it may be one of your inputs); for several "
            "files give --suffix or --output-dir, or remove it first"
        )
    return None
