"""The ``kstream`` command line; :mod:`kstream.cli.main` is its entry point.

The modules: :mod:`~kstream.cli.tui` (everything shown on the terminal),
:mod:`~kstream.cli.runner` (running a command's coroutine under signals), the command
modules (:mod:`~kstream.cli.key`, :mod:`~kstream.cli.many`, :mod:`~kstream.cli.cipher`,
:mod:`~kstream.cli.info`, :mod:`~kstream.cli.inspect`, ...) and :mod:`~kstream.cli.main`;
which may import which is written once, in ``tests/test_house.py``. This file imports none
of them at import time, so that importing one never drags in the others.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # not typing's: see kstream/__init__.py
if TYPE_CHECKING:
    from typing import NoReturn


def entry() -> NoReturn:
    """The console script. ``kstream --version`` answers before anything else is imported:
    a script that checks the version pays for the interpreter and nothing more."""
    if sys.argv[1:] == ["--version"]:
        from kstream import __version__

        sys.stdout.write(f"kstream {__version__}\n")
        sys.stdout.flush()
        raise SystemExit(0)
    import gc

    gc.disable()  # until the command runs: see kstream.cli.main.entry
    from kstream.cli.main import entry as run

    run()
