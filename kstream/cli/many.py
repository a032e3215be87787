"""Many files in one run: ``kstream encrypt --suffix .kst FILE...`` and its decrypt.

Starting Python costs more than encrypting a small file, so one command does many files,
concurrently in one event loop, each output atomic exactly as with ``IN OUT``. One file's
failure is reported with its name and the others still complete; the exit status is the
most severe one met (:data:`SEVERITY`).
"""

# No ``from __future__ import annotations`` in this module: typing.NamedTuple would turn its
# fields' annotations, then strings, into ForwardRefs, each compiled at import, and the first
# compile() in a process (it builds the ast module's types) costs more start-up time than a
# small file takes to encrypt. Names defined later are quoted instead.

import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from kstream.backends.base import FALLBACK_NOTICE, CipherOptions
from kstream.cli import tui
from kstream.cli.outputs import replace_refusal
from kstream.errors import KstreamError, UsageError
from kstream.keys.key import Key
from kstream.keys.passphrase import DEFAULT_WORK_FACTOR, Derivations, PassphraseArg, wipe

if TYPE_CHECKING:
    import argparse

    Unlock = Callable[[argparse.Namespace], tuple[Key | None, PassphraseArg | None, int | None]]

#: Exit statuses from the least to the most severe: a bad file (1) < a usage error for one
#: file, such as an existing output (2) < an I/O error (4) < no backend at all (3) < a
#: signal (143 SIGTERM, 130 SIGINT). The run exits with the most severe one met.
SEVERITY = (0, 1, 2, 4, 3, 70, 143, 130)
DEFAULT_SUFFIX = ".kst"
#: Files in flight by default, by the inputs' mean size (measured: docs/benchmark.md,
#: "Files in flight").
#: Small files go fastest one at a time (each is a few thread hops, and more at once only
#: adds contention for the GIL); larger ones gain from overlapping one's I/O with another's
#: cipher.
FILES_IN_FLIGHT = 4
SMALL_FILES_IN_FLIGHT = 1
SMALL_FILE = 1 << 20


def files_in_flight(sizes: Sequence[int]) -> int:
    """The default ``-j`` for a run over files of these sizes."""
    if sizes and sum(sizes) / len(sizes) < SMALL_FILE:
        return SMALL_FILES_IN_FLIGHT
    return FILES_IN_FLIGHT


def most_severe(codes: Sequence[int]) -> int:
    return max(
        codes, key=lambda c: SEVERITY.index(c) if c in SEVERITY else len(SEVERITY), default=0
    )


# A NamedTuple and a plain class, not dataclasses: the encrypt and decrypt commands import
# this module, and ``dataclasses`` costs more start-up time than a small file's encryption.
class Task(NamedTuple):
    """One file of the run: where it comes from and where its output goes."""

    src: str
    dst: str
    #: The input's size when the run was planned (for the bar, -j and the summary only).
    size: int = 0


def plan_outputs(
    files: Sequence[str], *, encrypt: bool, suffix: str, output_dir: str | None
) -> tuple[list[Task], list[tuple[str, KstreamError]]]:
    """Each input's output name, and the inputs refused before anything runs.

    Encrypting adds ``suffix``; decrypting removes it (a name without it is an error for
    that file). Outputs go next to their inputs, or into ``output_dir`` under their base
    names. Two inputs that would write the same output refuse the whole run.
    """
    if "-" in files:
        raise UsageError(
            "'-' (stdin/stdout) is not accepted with several files, --suffix or "
            "--output-dir; use 'IN OUT' for a pipe"
        )
    if not suffix:
        raise UsageError("--suffix must not be empty: each output needs a name of its own")
    if output_dir is not None:
        make_output_dir(output_dir)
    tasks: list[Task] = []
    refused: list[tuple[str, KstreamError]] = []
    for src in files:
        if os.path.isdir(src):
            refused.append((src, UsageError(directory_input(encrypt))))
            continue
        directory, base = os.path.split(src)
        if encrypt:
            name = base + suffix
        elif base.endswith(suffix) and len(base) > len(suffix):
            name = base[: -len(suffix)]
        else:
            refused.append(
                (
                    src,
                    UsageError(
                        f"the name does not end in '{suffix}'; give the suffix with --suffix"
                    ),
                )
            )
            continue
        dst = os.path.join(output_dir if output_dir is not None else directory, name)
        if (refusal := replace_refusal(dst, encrypt=encrypt)) is not None:
            refused.append((src, refusal))
            continue
        tasks.append(Task(src, dst, file_size(src)))
    seen: dict[str, str] = {}
    for task in tasks:
        real = os.path.realpath(task.dst)
        if real in seen:
            raise UsageError(
                f"'{seen[real]}' and '{task.src}' would both be written to '{task.dst}'"
            )
        seen[real] = task.src
    return tasks, refused


def make_output_dir(path: str) -> None:
    """``--output-dir``, created with its parents when missing (as zstd does)."""
    if os.path.isdir(path):
        return
    if os.path.lexists(path):
        raise UsageError(f"--output-dir '{path}' exists and is not a directory")
    try:
        os.makedirs(path)
    except OSError as exc:
        raise UsageError(f"cannot create --output-dir '{path}': {exc.strerror}") from exc


def directory_input(encrypt: bool) -> str:
    """What to say of a directory given as an input (the caller names it once)."""
    if encrypt:
        return (
            "is a directory; kstream encrypts files: give its files (with --suffix), "
            "or a tar of it ('tar c DIR | kstream encrypt -k KEY -o DIR.tar.kst')"
        )
    return "is a directory; give the .kst files in it"


class Tally:
    """What the run did, for the summary line."""

    __slots__ = ("bytes", "codes", "done", "failed", "files", "started")

    def __init__(self, files: int) -> None:
        self.files = files
        self.done = 0
        self.failed = 0
        self.bytes = 0
        self.codes: list[int] = []
        self.started = time.monotonic()

    def summary(self) -> str:
        seconds = time.monotonic() - self.started
        size = f"{self.bytes / 1e6:,.1f} MB" if self.bytes >= 100_000 else f"{self.bytes:,} B"
        left = self.files - self.done - self.failed
        not_started = f", {left} not done" if left else ""
        return (
            f"{self.files} files: {self.done} done, {self.failed} failed{not_started}, "
            f"{size} in {seconds:.2f} s"
        )


def fail(tally: Tally, src: str, exc: KstreamError) -> None:
    tally.failed += 1
    tally.codes.append(exc.exit_code)
    tui.error(f"{src}: {exc}")


async def run_all(
    tasks: Sequence[Task],
    one: Callable[[Task], Awaitable[None]],
    *,
    jobs: int,
    tally: Tally,
    file_done: Callable[[], None] | None = None,
) -> None:
    """Run ``one`` for every task with at most ``jobs`` in flight.

    On cancellation (Ctrl-C, SIGTERM) no new file starts and the ones in flight are
    cancelled: their partial outputs are removed, completed ones stay as they are.
    """
    import asyncio  # here: the parser imports this module, and --help needs no event loop

    from kstream.engine.threads import run_together

    slots = asyncio.Semaphore(jobs)

    async def guarded(task: Task) -> None:
        async with slots:
            try:
                await one(task)
            except KstreamError as exc:
                fail(tally, task.src, exc)
            else:
                tally.done += 1
                tally.bytes += task.size
            if file_done is not None:
                file_done()

    # A bug in one file (not a KstreamError) cancels the rest instead of leaving them running.
    await run_together(*(guarded(task) for task in tasks))


def file_size(path: str) -> int:
    """For the bar and the summary only: 0 where the size cannot be known."""
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def run_files(args: "argparse.Namespace", unlock: "Unlock", options: CipherOptions) -> int:
    """``kstream encrypt|decrypt [--suffix SUF] [--output-dir DIR] FILE...``; the status."""
    encrypt = args.command == "encrypt"
    if args.raw:
        raise UsageError(
            "--raw is for one IN and OUT: with several files every output would "
            "reuse the same IV (and keystream)"
        )
    tasks, refused = plan_outputs(
        args.paths,
        encrypt=encrypt,
        suffix=DEFAULT_SUFFIX if args.suffix is None else args.suffix,
        output_dir=args.output_dir,
    )
    key, phrase, factor = unlock(args)
    # A passphrase is asked once and derived once per salt for the whole run.
    shared = (
        None
        if phrase is None
        else Derivations(phrase, DEFAULT_WORK_FACTOR if factor is None or not encrypt else factor)
    )
    tally = Tally(len(args.paths))
    for src, exc in refused:
        fail(tally, src, exc)
    from kstream.api import Session
    from kstream.cli.runner import run
    from kstream.engine.plan import resolve_backend

    notify = once(notifier(args))
    sizes = [t.size for t in tasks]
    try:
        # Once for the run: a kernel probe per file would cost more than a small file does.
        backend = resolve_backend(key, args.backend, notify, options) if tasks else args.backend
        session = Session(
            key=key,
            passphrase=shared,
            max_work_factor=None if encrypt else factor,
            backend=backend,
            verify=args.verify,
            options=options,
            notify=notify,
        )
        transform = session.encrypt_file if encrypt else session.decrypt_file
        with tui.files_bar(args.progress, sum(sizes), len(tasks)) as (progress, file_done):

            async def one(task: Task) -> None:
                await transform(task.src, task.dst, force=args.force, jobs=1, progress=progress)

            async def go() -> None:
                try:
                    await run_all(
                        tasks,
                        one,
                        jobs=args.jobs or files_in_flight(sizes),
                        tally=tally,
                        file_done=file_done,
                    )
                finally:
                    if len(args.paths) > 1:
                        tui.notice(tally.summary(), quiet=args.quiet)

            run(go())
    finally:
        wipe_secrets(key, phrase, shared)
    return most_severe(tally.codes)


def wipe_secrets(
    key: Key | None, phrase: PassphraseArg | None, shared: Derivations | None = None
) -> None:
    """Wipe what unlocked a run once it ends: the key, the passphrase as read, and the keys
    derived from it."""
    if key is not None:
        key.wipe()
    if shared is not None:
        shared.wipe()
    if isinstance(phrase, bytearray):
        wipe(phrase)


def notifier(args: "argparse.Namespace") -> Callable[[str], None]:
    """The API's ``notify`` for an encrypt or decrypt run: its notices, except the fallback
    to OpenSSL where the user chose the backend (``args.backend_chosen``: by ``--backend``
    or ``KSTREAM_BACKEND``), since whoever chose ``auto`` knows it may fall back."""
    say = tui.notifier(args.quiet)
    if not getattr(args, "backend_chosen", False):
        return say

    def notify(message: str) -> None:
        if message != FALLBACK_NOTICE:
            say(message)

    return notify


def once(notify: Callable[[str], None]) -> Callable[[str], None]:
    """``notify``, saying each distinct message once per run (not once per file)."""
    said: set[str] = set()

    def say(message: str) -> None:
        if message not in said:
            said.add(message)
            notify(message)

    return say
