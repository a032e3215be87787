"""Encrypted files as Python file objects: :func:`kstream.open` and its async counterpart.

``ends`` (positioned reads of the encrypted file, writes of a new one), ``body`` (which
segment holds which bytes; decrypting, checking and caching segments), ``reader`` and
``writer`` (the ``io.BufferedIOBase`` objects), ``opener`` (the key, the plan and the
object, from :func:`kstream.open`'s arguments), ``aio`` (the same for asyncio) and ``fs``
(the ``kstream::`` fsspec filesystem, needing the optional ``fsspec``). The package imports
nothing itself, so importing one of its modules costs only that module.
"""
