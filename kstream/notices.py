"""Where the library's notices go when the caller passes no ``notify``: the ``kstream``
logger, at INFO (the command line passes its own, which writes ``kstream: notice:``)."""

from __future__ import annotations

import logging

log = logging.getLogger("kstream")


def log_notice(message: str) -> None:
    """The default ``notify`` of the API and of :func:`kstream.open`."""
    log.info("%s", message)
