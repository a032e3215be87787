"""The ``kstream`` command line; :mod:`kstream.cli.main` is its entry point.

Layers, each importing only those before it: :mod:`~kstream.cli.tui` (everything shown on
the terminal), :mod:`~kstream.cli.runner` (running a command's coroutine under signals),
the command modules :mod:`~kstream.cli.key`, :mod:`~kstream.cli.cipher` and
:mod:`~kstream.cli.info`, and :mod:`~kstream.cli.main`. This file imports nothing, so that
importing one layer never drags in the others.
"""
