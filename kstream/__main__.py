"""``python -m kstream`` is the ``kstream`` command."""

from kstream.cli.main import entry

entry()
