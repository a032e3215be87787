"""The drivers that move segments between sources, the codec and sinks.

The three drivers (``pipe``: an fd stream, ``iterate``: an async iterable, ``ranges``: file
ranges in parallel) share one codec (:mod:`kstream.segments`); ``plan`` chooses the codec
and the driver once per run and is the only module here that resolves a backend. Which
module may import which: ``tests/test_house.py`` (the one place that order is written).
"""
