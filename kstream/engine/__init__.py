"""The drivers that move segments between sources, the codec and sinks.

``threads`` < ``fdio`` < ``iterate``, ``pipe``, ``ranges`` < ``plan``: the three drivers (an
fd stream, an async iterable, file ranges in parallel) share one codec
(:mod:`kstream.segments`); ``plan`` chooses the codec and the driver once per run and is the
only module here that resolves a backend.
"""
