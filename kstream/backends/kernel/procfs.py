"""Read ``/proc/crypto``: which implementations (drivers) of an algorithm the kernel has.

``/proc/crypto`` is the only portable way to see what the kernel will run for a name like
``ctr(aes)``: it lists every registered algorithm as a block of ``key : value`` lines,
blocks separated by blank lines. The kernel resolves a name to the registered, non-internal,
self-tested implementation with the highest priority (on a tie, the one listed first, which
is the one registered last). Template instances such as ``ctr(aes-generic)`` only appear
once something has asked for them, so callers that want the kernel's choice should bind the
name once (see :func:`kstream.backends.kernel.backend.ctr_aes_drivers`) before reading
this file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

PROC_CRYPTO = "/proc/crypto"

#: ``/proc/crypto`` types that an AF_ALG socket of a given type can bind to. The kernel
#: matches types under a mask, so e.g. a ``skcipher`` socket also accepts ``lskcipher``
#: algorithms (6.7 and later) and a ``hash`` socket both ``shash`` and ``ahash`` ones.
SOCKET_TYPES: Mapping[str, frozenset[str]] = {
    "skcipher": frozenset({"skcipher", "lskcipher"}),
    "hash": frozenset({"shash", "ahash"}),
    "aead": frozenset({"aead"}),
    "cipher": frozenset({"cipher"}),
}


@dataclass(frozen=True)
class CryptoAlg:
    """One block of ``/proc/crypto``. Fields a block does not have are ``None``."""

    name: str
    driver: str
    module: str
    priority: int
    refcnt: int
    selftest: str
    internal: bool
    type: str
    is_async: bool | None = None
    blocksize: int | None = None
    min_keysize: int | None = None
    max_keysize: int | None = None
    ivsize: int | None = None
    chunksize: int | None = None
    walksize: int | None = None
    digestsize: int | None = None
    #: Every ``key : value`` of the block as written, for fields not modelled above.
    fields: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def usable(self) -> bool:
        """Whether the kernel would hand this out for a lookup by name.

        Internal helpers (e.g. ``__ctr-aes-aesni``) cannot be bound from user space, and an
        implementation whose self-test has not passed is never chosen.
        """
        return not self.internal and self.selftest == "passed"


def _int(fields: Mapping[str, str], key: str) -> int | None:
    value = fields.get(key)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _yes_no(fields: Mapping[str, str], key: str) -> bool | None:
    value = fields.get(key)
    if value is None:
        return None
    return value == "yes"


def _record(fields: dict[str, str]) -> CryptoAlg | None:
    if "name" not in fields or "driver" not in fields:
        return None
    return CryptoAlg(
        name=fields["name"],
        driver=fields["driver"],
        module=fields.get("module", "kernel"),
        priority=_int(fields, "priority") or 0,
        refcnt=_int(fields, "refcnt") or 0,
        selftest=fields.get("selftest", "unknown"),
        internal=bool(_yes_no(fields, "internal")),
        type=fields.get("type", "unknown"),
        is_async=_yes_no(fields, "async"),
        blocksize=_int(fields, "blocksize"),
        min_keysize=_int(fields, "min keysize"),
        max_keysize=_int(fields, "max keysize"),
        ivsize=_int(fields, "ivsize"),
        chunksize=_int(fields, "chunksize"),
        walksize=_int(fields, "walksize"),
        digestsize=_int(fields, "digestsize"),
        fields=dict(fields),
    )


def parse_proc_crypto(text: str) -> list[CryptoAlg]:
    """Every algorithm block in ``text`` (the content of ``/proc/crypto``), in file order.

    Blocks without a name or driver (which the kernel never writes) are skipped rather than
    failing, so a format extension in a future kernel cannot break ``kstream backends``.
    """
    algs: list[CryptoAlg] = []
    fields: dict[str, str] = {}
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            record = _record(fields)
            if record is not None:
                algs.append(record)
            fields = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return algs


def read_proc_crypto(path: str = PROC_CRYPTO) -> list[CryptoAlg]:
    """Parse ``/proc/crypto``; an empty list when it cannot be read (no procfs, no crypto)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse_proc_crypto(f.read())
    except OSError:
        return []


def implementations(
    algs: Iterable[CryptoAlg],
    name: str,
    socket_type: str | None = None,
    *,
    include_unusable: bool = False,
) -> list[CryptoAlg]:
    """The implementations of algorithm ``name``, the kernel's preference first.

    ``socket_type`` (an AF_ALG type such as ``skcipher``) keeps only implementations such a
    socket can bind; internal and untested ones are left out unless ``include_unusable``.
    The sort is stable, so equal priorities keep ``/proc/crypto`` order, which is the
    kernel's own tie-break.
    """
    types = SOCKET_TYPES.get(socket_type, frozenset({socket_type})) if socket_type else None
    found = [
        alg
        for alg in algs
        if alg.name == name
        and (types is None or alg.type in types)
        and (include_unusable or alg.usable)
    ]
    return sorted(found, key=lambda alg: -alg.priority)


def kernel_pick(
    algs: Iterable[CryptoAlg], name: str, socket_type: str | None = None
) -> CryptoAlg | None:
    """The implementation the kernel resolves ``name`` to now, or ``None`` if none is listed.

    ``name`` may also be a driver name (``ctr-aes-aesni``): an exact driver match wins, as it
    does in the kernel's lookup.
    """
    listed = list(algs)
    types = SOCKET_TYPES.get(socket_type, frozenset({socket_type})) if socket_type else None
    for alg in listed:
        if alg.driver == name and alg.usable and (types is None or alg.type in types):
            return alg
    candidates = implementations(listed, name, socket_type)
    return candidates[0] if candidates else None


def find_driver(algs: Iterable[CryptoAlg], driver: str) -> CryptoAlg | None:
    """The block whose driver name is ``driver`` (any type), or ``None``."""
    for alg in algs:
        if alg.driver == driver:
            return alg
    return None


__all__ = [
    "PROC_CRYPTO",
    "SOCKET_TYPES",
    "CryptoAlg",
    "find_driver",
    "implementations",
    "kernel_pick",
    "parse_proc_crypto",
    "read_proc_crypto",
]
