"""``python -m kstream.bench``: the ``bench`` subcommand on its own, without the rest of the CLI.

An entry point only: no module imports this one, so it adds no edge to the package's imports.
"""

import sys

from kstream.bench.cli import main

sys.exit(main())
