"""Keys: where they come from and how they are kept.

``key`` (raw keys, key files, references to keyring keys), ``passphrase`` (scrypt),
``keyring`` (the kernel keyring), ``encrypted`` (durable ``encrypted`` keys and their
blobs) and ``unlock`` (the rules that pair a secret with a file's header). How a backend
takes a key lives with the backends (``backends.select.prepared_key``, the kernel's
``KernelKey``). Which module may import which: ``tests/test_house.py``. The package
imports nothing itself, so importing one of its modules costs
only that module.
"""
