"""``kstream keygen`` and ``kstream key ...``: key files, keys that live in the kernel
keyring, and ``--key-name``/``--key-serial``.

The keyring feature is this one module: the encrypt/decrypt commands only declare the two
options (``--key-name``, ``--key-serial``) with their other key options, and import
:func:`load_keyring_key` to ask it for the key when one of them is given (a run with a key
file does not pay for importing the keyring).

A ``logon`` key (the default) can never be read back by any process, so ``key gen`` is
the only moment its bytes exist outside the kernel: ``--save`` writes the one backup there
can ever be, before the in-memory copy is wiped.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from kstream.cli import prompts, tui
from kstream.errors import KstreamError, UsageError
from kstream.keys import encrypted, keyring
from kstream.keys.key import Key, readable_by_others

#: The keyrings a command can put a key in; ``process`` is refused (see :func:`_ring`).
KEYRING_CHOICES = ("user", "session")
TYPE_CHOICES = ("logon", "user")
#: When a key with no copy outside its keyring is lost, by keyring.
LOST_AT = {"user": "reboot", "session": "logout"}


def _ring(text: str) -> str:
    """``--keyring``: not offered, yet explained: ``process`` is a real keyring that a
    program may use, but a command's own process keyring dies with the command."""
    if text == "process":
        raise argparse.ArgumentTypeError(
            "'process' would put the key in this command's own keyring, which vanishes "
            "when it exits; use user or session (or Key.add_to_keyring(..., ring='process') "
            "inside a program)"
        )
    return text


def load_keyring_key(args: argparse.Namespace) -> Key | None:
    """The keyring key that ``--key-name``/``--key-serial`` name, or ``None`` if neither.

    A ``user`` key with an explicit ``--backend openssl`` is read out here, once, with a
    warning on stderr (not silenced by -q: the user should know the key left the kernel).
    A ``logon`` key is passed on as it is; the API refuses it for openssl with the reason.
    ``KSTREAM_BACKEND=openssl`` is a host's default, set once for every run, not a decision
    to take this key out of the kernel: for a keyring key it counts as ``auto`` (the kernel),
    with a notice naming the variable.
    """
    name = getattr(args, "key_name", None)
    serial = getattr(args, "key_serial", None)
    if name is None and serial is None:
        return None
    if name is not None:
        try:
            key = Key.from_keyring(name)
        except keyring.KeyNotFound:
            if not _autoload(name, getattr(args, "quiet", False)):
                raise
            key = Key.from_keyring(name)
    else:
        key = Key.from_keyring(serial=serial)
    ref = key.keyring_ref
    backend = getattr(args, "backend", None)
    chosen_by = getattr(args, "backend_chosen", "")  # KSTREAM_BACKEND, --backend or ""
    if ref is not None and backend == "openssl" and chosen_by not in ("", "--backend"):
        tui.notice(
            f"{chosen_by}=openssl does not apply to {ref.label}: only --backend "
            "openssl reads a keyring key out of the kernel; using the kernel",
            quiet=getattr(args, "quiet", False),
        )
        args.backend = backend = "auto"
    if ref is not None and ref.type == "user" and backend == "openssl":
        tui.warning(
            f"--backend openssl reads {ref.label} out of the kernel keyring: the "
            "key's bytes now enter this process's memory"
        )
        return Key(key.material())
    return key


def _autoload(name: str, quiet: bool) -> bool:
    """Load durable key NAME from its blob at the default path, if there is one (its master
    must be loaded: else that is the error); whether it was loaded."""
    blob = encrypted.blob_path(name)
    if not blob.exists():
        return False
    _warn_loose_blob_directory(blob, quiet)
    serial = encrypted.load(name, blob, "user")
    tui.notice(
        f"loaded encrypted key '{keyring.description_for(name)}' (serial {serial}) "
        f"from {blob} into the user keyring",
        quiet=quiet,
    )
    return True


def _warn_loose_blob_directory(blob: Path, quiet: bool) -> None:
    loose = encrypted.loose_blob_directory(blob)
    if loose is not None:
        tui.warning(loose, quiet=quiet)


# --------------------------------------------------------------------------- parser


def add_keygen_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``kstream keygen`` on the top-level subparsers ``sub``."""
    p = sub.add_parser("keygen", parents=[common], help="create a random key file (mode 0600)")
    p.add_argument("output", metavar="OUT", help="new key file, or '-' for stdout (hex)")
    p.add_argument(
        "--bits", type=int, choices=(128, 192, 256), default=256, help="key size (default 256)"
    )


def add_key_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``kstream key {add,gen,list,rm}`` on the top-level subparsers ``sub``."""
    p = sub.add_parser(
        "key",
        parents=[common],
        help="manage keys in the kernel keyring (add, gen, load, list, rm)",
        description="Keys kept in the Linux kernel keyring as kstream:NAME. "
        "A logon key (the default) can never be read back by any process; "
        "encrypt and decrypt use it with --key-name NAME (Linux ≥ 6.2).",
    )
    keys = p.add_subparsers(
        dest="key_command", metavar="ACTION", parser_class=type(p), required=True
    )

    def placement(q: argparse.ArgumentParser) -> None:
        q.add_argument(
            "--type",
            dest="key_type",
            choices=TYPE_CHOICES,
            default="logon",
            help="logon (default): no process can read it back; user: readable "
            "by its possessor (allows --backend openssl)",
        )
        q.add_argument(
            "--keyring",
            type=_ring,
            choices=KEYRING_CHOICES,
            default="user",
            help="user (default): lives until reboot or until the user's last "
            "process ends; session: this login session's keyring, until logout",
        )
        q.add_argument("-q", "--quiet", action="store_true", help="no notices on stderr")

    q = keys.add_parser(
        "add",
        parents=[common],
        help="add a key file's key to the keyring",
        description="Load 16, 24 or 32 bytes (raw or hex, as 'kstream keygen' "
        "writes) into the kernel keyring as kstream:NAME; prints the serial.",
    )
    q.add_argument("name", metavar="NAME", help="the key's name (stored as kstream:NAME)")
    q.add_argument(
        "keyfile",
        metavar="KEYFILE",
        nargs="?",
        default="-",
        help="key file, or '-' for stdin (default)",
    )
    placement(q)

    q = keys.add_parser(
        "gen",
        parents=[common],
        help="generate a key inside the keyring",
        description="Generate a random key straight into the kernel keyring "
        "as kstream:NAME; prints the serial. Without --save no copy exists "
        "anywhere else: the key is lost with its keyring (at reboot, or at "
        "logout for the session keyring).",
    )
    q.add_argument("name", metavar="NAME", help="the key's name (stored as kstream:NAME)")
    q.add_argument(
        "--bits", type=int, choices=(128, 192, 256), default=256, help="key size (default 256)"
    )
    q.add_argument(
        "--save",
        metavar="KEYFILE",
        help="also write a backup key file (hex, mode 0600, never overwritten); "
        "the only chance to keep a copy of a logon key",
    )
    q.add_argument(
        "--durable",
        action="store_true",
        help="an encrypted key: the kernel generates it (AES-256) and kstream saves "
        "only its blob, wrapped by --master; 'kstream key load' brings it back "
        "after a reboot",
    )
    q.add_argument(
        "--master",
        metavar="MASTER",
        help="with --durable: a kstream key name (user key kstream:MASTER), or "
        "user:DESC / trusted:DESC",
    )
    q.add_argument(
        "--blob",
        metavar="PATH",
        help="with --durable: the blob file (default "
        "$XDG_DATA_HOME/kstream/keys/NAME.blob; mode 0600, never overwritten)",
    )
    placement(q)

    q = keys.add_parser(
        "load",
        parents=[common],
        help="load a durable key from its blob",
        description="Re-create the encrypted key kstream:NAME from the blob "
        "that 'kstream key gen --durable' wrote (its master key must be "
        "loaded); prints the serial.",
    )
    q.add_argument("name", metavar="NAME", help="the key's name (stored as kstream:NAME)")
    q.add_argument(
        "--blob",
        metavar="PATH",
        help="the blob file (default $XDG_DATA_HOME/kstream/keys/NAME.blob)",
    )
    q.add_argument(
        "--keyring",
        type=_ring,
        choices=KEYRING_CHOICES,
        default="user",
        help="user (default) or session",
    )
    q.add_argument("-q", "--quiet", action="store_true", help="no notices on stderr")

    q = keys.add_parser(
        "list",
        parents=[common],
        help="list kstream's keys in the keyrings",
        description="kstream's keys that this process can see: serial, type, "
        "size, the keyrings that hold them, permissions.",
    )
    q.add_argument("--json", action="store_true", help="machine-readable output")

    q = keys.add_parser(
        "rm",
        parents=[common],
        help="remove (invalidate) a key",
        description="Invalidate kstream:NAME: it disappears from every "
        "keyring at once. Files encrypted with it need a backup to decrypt. "
        "A logon key cannot be read back, so removing one asks first on a "
        "terminal; without a terminal it needs --yes.",
    )
    q.add_argument("name", metavar="NAME", help="the key's name")
    q.add_argument(
        "-y",
        "--yes",
        action="store_true",
        help="remove a logon key without asking (scripts: say it here, since "
        "there is no terminal to ask on)",
    )


# --------------------------------------------------------------------------- commands


def cmd_keygen(args: argparse.Namespace) -> int:
    key = Key.generate(args.bits)
    try:
        if args.output == "-":
            tui.refuse_terminal(
                1, "refusing to print a key on a terminal; redirect stdout or give a file"
            )
            os.write(1, key.hex_text())
        else:
            key.save(args.output)
    finally:
        key.wipe()
    return 0


#: Why a 16-byte key in the keyring is weaker than it looks (docs/keys.md): AF_ALG takes a
#: key by serial for *any* algorithm, and ``ghash`` keyed with a 16-byte H maps the block
#: 80 00..00 to H itself.
SHORT_KEY_WARNING = (
    "a 128-bit key in the kernel keyring can be read back by any process that can use it, "
    "on kernels with the ghash or polyval hash (AF_ALG keyed by its serial returns the key; "
    "'kstream backends' says whether this kernel has them); use 256 bits"
)


def unusable_here(key_type: str) -> str | None:
    """Why a keyring key of ``key_type`` cannot be used for encryption on this host, or
    ``None`` if it can: the kernel backend (AF_ALG) is unavailable, or the kernel cannot
    take keys by serial. A key is still worth creating (another boot or kernel may use it),
    but a person creating one should not find out only at the first encrypt."""
    from kstream.backends.kernel.backend import KernelBackend
    from kstream.backends.kernel.diagnosis import key_by_serial_support

    status = KernelBackend().probe()
    if status.available:
        serial = key_by_serial_support()
        if serial["supported"] is not False:
            return None
        why = f"this kernel cannot take keys by serial ({serial['detail']}; needs Linux ≥ 6.2)"
    else:
        why = f"the kernel backend is unavailable: {status.reason}"
    if key_type == "user":
        return (
            f"on this host it can only be used with --backend openssl, which reads it "
            f"into process memory: {why}; see 'kstream backends'"
        )
    return f"it cannot be used on this host: {why}; see 'kstream backends'"


def _added(args: argparse.Namespace, key: Key, serial: int, only_copy: bool) -> None:
    """The serial on stdout (for scripts); what happened on stderr unless -q. Warnings,
    shown even with -q: a 128-bit key, a key that only the keyring holds (it is lost with
    the keyring), and a key this host cannot use."""
    print(serial)
    if key.bits == 128:
        tui.warning(SHORT_KEY_WARNING)
    label = f"{args.key_type} key '{keyring.description_for(args.name)}'"
    tui.notice(f"added {label} (AES-{key.bits}) to the {args.keyring} keyring", quiet=args.quiet)
    if only_copy:
        tui.warning(
            f"{label}: no copy exists anywhere else, so it is lost at "
            f"{LOST_AT[args.keyring]}; use --save KEYFILE to keep a backup"
        )
    unusable = unusable_here(args.key_type)
    if unusable is not None:
        tui.warning(f"{label}: {unusable}")


def cmd_add(args: argparse.Namespace) -> int:
    keyring.description_for(args.name)  # a bad name fails before the key is read
    if args.keyfile == "-":
        tui.refuse_terminal(
            0,
            "refusing to read a key from the terminal; give KEYFILE or pipe the key in "
            "(e.g. 'kstream keygen - | kstream key add NAME')",
        )
        key = Key.from_fd(0)
    else:
        key = Key.from_file(args.keyfile)
        loose = readable_by_others(args.keyfile)
        if loose is not None:
            tui.warning(loose, quiet=args.quiet)
    try:
        serial = key.add_to_keyring(args.name, args.key_type, args.keyring)
        _added(args, key, serial, only_copy=False)
    finally:
        key.wipe()
    return 0


def _blob(args: argparse.Namespace) -> Path:
    return Path(args.blob) if args.blob else encrypted.blob_path(args.name)


def cmd_gen_durable(args: argparse.Namespace) -> int:
    if args.master is None:
        raise UsageError(
            "--durable needs --master MASTER: the key that wraps its blob (a "
            "kstream key name, or user:DESC / trusted:DESC)"
        )
    for given, why in (
        (args.save is not None, "--save"),
        (args.key_type != "logon", "--type"),
        (args.bits != 256, "--bits"),
    ):
        if given:
            raise UsageError(
                f"{why} does not apply to --durable: the kernel generates an "
                "AES-256 encrypted key, and its blob is the backup"
            )
    blob = _blob(args)
    serial = encrypted.generate(args.name, args.master, blob, args.keyring)
    print(serial)
    _warn_loose_blob_directory(blob, args.quiet)
    master = encrypted.master_descriptor(args.master)
    tui.notice(
        f"added encrypted key '{keyring.description_for(args.name)}' (AES-256, "
        f"master {master}) to the {args.keyring} keyring; blob written to {blob} "
        "(after a reboot: load the master, then 'kstream key load "
        f"{keyring.name_of(keyring.description_for(args.name))}')",
        quiet=args.quiet,
    )
    unusable = unusable_here("encrypted")
    if unusable is not None:
        tui.warning(f"encrypted key '{keyring.description_for(args.name)}': {unusable}")
    return 0


def _loaded_from(name: str, blob: Path, ring: str) -> int | None:
    """The serial of ``kstream:NAME`` if ``ring`` already holds it as loaded from ``blob``
    (the kernel gives an encrypted key's blob back as it took it), else None."""
    text, _ = encrypted.read_blob(blob)
    try:
        serial = keyring.search(ring, "encrypted", keyring.description_for(name))
        current = encrypted.export_blob(serial)
    except (OSError, KstreamError):
        return None
    return serial if current == text.encode("ascii") else None


def cmd_load(args: argparse.Namespace) -> int:
    """Load a durable key from its blob; one already loaded from that blob is left as it is,
    so that the command can sit in a login script."""
    blob = _blob(args)
    serial = _loaded_from(args.name, blob, args.keyring)
    if serial is not None:
        print(serial)
        tui.notice(
            f"encrypted key '{keyring.description_for(args.name)}' is already loaded "
            f"from {blob} (serial {serial}); nothing to do",
            quiet=args.quiet,
        )
        return 0
    _warn_loose_blob_directory(blob, args.quiet)
    serial = encrypted.load(args.name, blob, args.keyring)
    print(serial)
    tui.notice(
        f"loaded encrypted key '{keyring.description_for(args.name)}' from {blob} "
        f"into the {args.keyring} keyring",
        quiet=args.quiet,
    )
    return 0


def cmd_gen(args: argparse.Namespace) -> int:
    if args.durable:
        return cmd_gen_durable(args)
    if args.master is not None or args.blob is not None:
        raise UsageError("--master and --blob need --durable")
    description = keyring.description_for(args.name)
    keyring.ensure_absent(description, args.keyring)  # before a backup file is written
    key = Key.generate(args.bits)
    saved = False
    try:
        if args.save is not None:
            key.save(args.save)
            saved = True
        serial = key.add_to_keyring(args.name, args.key_type, args.keyring)
    except BaseException:
        if saved:  # a backup of a key that never reached the keyring would only mislead
            os.unlink(args.save)
        raise
    finally:
        key.wipe()
    _added(args, key, serial, only_copy=args.save is None)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    listed = keyring.list_keys(
        master_of=lambda description: encrypted.master_in(
            encrypted.blob_path(keyring.name_of(description))
        )
    )
    if args.json:
        print(json.dumps([k.to_json() for k in listed], indent=2))
        return 0
    if not listed:
        print(
            "no kstream keys in the keyrings this process can see "
            "(create one with 'kstream key gen NAME')"
        )
        return 0
    rows = [("SERIAL", "TYPE", "BITS", "KEYRING", "EXPIRY", "PERMISSIONS", "MASTER", "NAME")]
    rows += [
        (
            str(k.serial),
            k.type,
            str(k.bits or "?"),
            ",".join(k.keyrings),
            k.expiry,
            keyring.format_perm(k.perm),
            (k.master or "?") if k.type == "encrypted" else "-",
            k.name,
        )
        for k in listed
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1]
        )
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    """Invalidate the key; a logon key only after a yes (on a terminal) or ``--yes``.

    kstream cannot know whether a backup of a logon key exists (``key gen --save`` wrote
    one, ``key add`` read one, or neither), and nothing can read the key back to make one,
    so the question is the user's. ``user`` keys can still be read out, and an encrypted
    key's blob is its backup: those go without asking.
    """
    try:
        ref = keyring.find_key(args.name)
    except (keyring.KeyNotFound, keyring.DeadKey):  # a dead key leaves by itself
        raise keyring.KeyNotFound(
            f"no key '{keyring.description_for(args.name)}' in the session or user keyring: "
            "nothing to remove (see 'kstream key list')"
        ) from None
    if ref.type == "logon" and not args.yes:
        question = (
            f"remove {ref.label}? It cannot be read back: files encrypted with it "
            "stay readable only with a backup key file"
        )
        if not prompts.confirm(
            question,
            refusal=(
                f"refusing to remove {ref.label} without asking: no terminal to ask on; "
                "add --yes if a backup key file exists or the files it encrypted are no "
                "longer needed"
            ),
        ):
            tui.notice(f"kept {ref.label}", quiet=False)
            return 0
    keyring.invalidate(ref)
    print(f"removed {ref.label}")
    blob = encrypted.blob_path(args.name)
    if ref.type == "encrypted" and blob.exists():
        tui.notice(
            f"its blob stays at {blob}: 'kstream key load {args.name}' brings the key "
            "back; delete the blob to destroy the key",
            quiet=False,
        )
    return 0


KEY_COMMANDS = {"add": cmd_add, "gen": cmd_gen, "list": cmd_list, "load": cmd_load, "rm": cmd_rm}


def cmd_key(args: argparse.Namespace) -> int:
    """``kstream key ACTION``: dispatch to the action's handler."""
    return KEY_COMMANDS[args.key_command](args)


__all__ = [
    "add_key_parser",
    "add_keygen_parser",
    "cmd_key",
    "cmd_keygen",
    "load_keyring_key",
    "unusable_here",
]
