"""Raw mode's rules, in one place for the command line and the library: bare AES-CTR has
no header, so its IV comes from the caller and a passphrase (whose salt a header carries)
cannot be used. Cheap to import: the command line checks these before loading a cipher."""

from __future__ import annotations

from kstream.errors import UsageError, option
from kstream.format import IV_SIZE


def check_raw(raw: bool, keyed: bool) -> None:
    """Refuse raw mode with a passphrase (``keyed`` is False)."""
    if raw and not keyed:
        raise UsageError(
            f"{option('raw')} takes a key: raw output has no header to hold a passphrase's salt"
        )


def check_iv(iv: bytes | None, raw: bool) -> bytes | None:
    """The raw-mode IV (required there), or None for a kstream file (refused there)."""
    if raw:
        if iv is None:
            raise UsageError(f"{option('raw')} needs {option('iv')}: raw output has no header")
        if len(iv) != IV_SIZE:
            raise UsageError(f"the IV must be {IV_SIZE} bytes, got {len(iv)}")
        return bytes(iv)
    if iv is not None:
        raise UsageError(
            f"{option('iv given')} is only allowed with {option('raw')}; "
            "kstream files get a fresh random IV"
        )
    return None
