"""Atomic output files: OUT appears complete or not at all; streams are written directly.

Data goes to a temporary file in OUT's own directory (so the final rename cannot cross
filesystems), which is fsynced and then renamed over OUT. On any error or interruption the
temporary file is removed and an existing OUT is left untouched. After a SIGKILL only the
temporary file can remain; its name (``.OUT.XXXXXXXX.kstream-partial``) says what it is.

An output that is not a file but a stream (``/dev/null``, a FIFO, ``/dev/stdout``, a shell's
``>(cmd)``) cannot be renamed over and cannot take back what it received: it is written
directly, like ``-``, and ``decrypt FILE /dev/null`` is an integrity check. Only a stream
the user (or root) owns is written: a FIFO another user planted in a shared directory such
as ``/tmp`` would hand them the plaintext (see :func:`check_stream_owner`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

from kstream.errors import UsageError, io_errors, option

PARTIAL_SUFFIX = ".kstream-partial"
#: Paths that name one of this process's open descriptors, as shells hand them over
#: (``>(cmd)`` becomes ``/dev/fd/63``): such an output is that descriptor itself.
_DESCRIPTOR_PATHS = {"/dev/stdout": 1, "/dev/stderr": 2}
_DESCRIPTOR_DIRS = ("/dev/fd/", "/proc/self/fd/")


def own_descriptor(path: str) -> int | None:
    """N if ``path`` is ``/dev/stdout``, ``/dev/stderr``, ``/dev/fd/N`` or
    ``/proc/self/fd/N``: written to as descriptor N (at its offset, with its flags), as
    ``-`` is for stdout, instead of being reopened or, worse, renamed over."""
    if path in _DESCRIPTOR_PATHS:
        return _DESCRIPTOR_PATHS[path]
    for prefix in _DESCRIPTOR_DIRS:
        if path.startswith(prefix) and path[len(prefix) :].isdigit():
            return int(path[len(prefix) :])
    return None


def is_stream(mode: int) -> bool:
    """Whether an output of this mode is written directly: a character device (``/dev/null``,
    a terminal) or a FIFO. Neither can be replaced by a rename, and nothing written to
    them can be taken back, so there is no temporary file and no overwrite to refuse."""
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def check_stream_owner(path: str, st: os.stat_result) -> None:
    """Refuse a FIFO or device that neither this user nor root owns.

    Whoever owns a FIFO can read it: one planted under OUT's name in a shared directory
    (``/tmp``) by another user would receive the plaintext. Opening an existing FIFO takes
    no ``O_CREAT``, so the kernel's ``fs.protected_fifos`` does not stop it, and the check
    is the owner. Root can read everything anyway, so its devices (``/dev/null``,
    ``/dev/tty``) and FIFOs pass. Called on the path first and on the opened descriptor
    again, so a swap in between is caught too. A user who means to feed another user's
    FIFO opens it themselves (a shell redirection) and hands kstream the descriptor.
    """
    if st.st_uid in (os.geteuid(), 0):
        return
    kind = "FIFO" if stat.S_ISFIFO(st.st_mode) else "device"
    raise UsageError(
        f"refusing to write to '{path}': a {kind} owned by another user "
        f"(uid {st.st_uid}), who can read what goes into it; if that is "
        "intended, open it yourself and pass the descriptor (e.g. OUT '-' and "
        "a shell redirection)"
    )


#: The outputs whose partial file :meth:`AtomicFile.abort` removed in this process, in
#: order: what an interrupted command can truthfully say it cleaned up.
partials_removed: list[str] = []


def check_output_path(
    path: str, *, force: bool, src: str | None = None, no_terminal: bool = False
) -> bool:
    """Refuse outputs that would destroy data: an existing OUT without ``force``, IN itself,
    a directory, a block device, a socket, another user's FIFO or device
    (:func:`check_stream_owner`). True if ``path`` is a stream (see :func:`is_stream`, and
    :func:`own_descriptor`), written directly; False for a file,
    written atomically. ``no_terminal`` refuses a terminal (ciphertext does not belong
    on one)."""
    fd = own_descriptor(path)
    try:
        with io_errors("check output", f"'{path}'", passthrough=(FileNotFoundError,)):
            st = os.fstat(fd) if fd is not None else os.stat(path)
    except FileNotFoundError:
        return False
    if fd is not None or is_stream(st.st_mode):
        if fd is None:
            check_stream_owner(path, st)
        if no_terminal and _is_terminal(path, fd, st.st_mode):
            raise UsageError(
                f"refusing to write ciphertext to the terminal '{path}'; give a file or a pipe"
            )
        return True
    if src is not None:
        with contextlib.suppress(OSError):
            if os.path.samefile(src, path):
                raise UsageError(
                    f"input and output are the same file ('{path}'); write to a new file"
                )
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"output '{path}' is a directory; give a file name")
    if not stat.S_ISREG(st.st_mode):
        what = "a block device" if stat.S_ISBLK(st.st_mode) else "a socket or other special file"
        raise UsageError(
            f"output '{path}' is {what}; kstream writes to files, FIFOs and character devices"
        )
    if not force:
        raise UsageError(f"output '{path}' already exists; use {option('force')} to overwrite it")
    return False


def _is_terminal(path: str, fd: int | None, mode: int) -> bool:
    if fd is not None:
        return os.isatty(fd)
    if not stat.S_ISCHR(mode):
        return False
    with contextlib.suppress(OSError):
        probe = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            return os.isatty(probe)
        finally:
            os.close(probe)
    return False


def output_changed(path: str) -> UsageError:
    """The error for an output whose kind (file or stream) changed after
    :func:`check_output_path` classified it: written either way, it could lose data."""
    return UsageError(f"output '{path}' changed while kstream started; run it again")


def open_stream(path: str) -> tuple[int, bool] | None:
    """Open a stream output (:func:`check_output_path` said True): ``(fd, owned)``, owned
    meaning the caller closes it; None while a FIFO has no reader yet (try again later:
    a blocking open could not be cancelled)."""
    own = own_descriptor(path)
    if own is not None:
        return own, False
    with io_errors("open output", f"'{path}'"):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.ENXIO and stat.S_ISFIFO(os.stat(path).st_mode):
                return None  # a FIFO without a reader
            raise
    try:
        st = os.fstat(fd)
        if not is_stream(st.st_mode):  # replaced since it was checked: never into a file
            raise output_changed(path)
        check_stream_owner(path, st)  # what was opened, not what the path named before
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, True


def _create_partial(directory: str, base: str) -> tuple[int, str]:
    """A new file ``.BASE.XXXXXXXX.kstream-partial`` in ``directory``, mode 0600, as
    ``tempfile.mkstemp`` makes one (whose module costs more to import than a small file
    takes to encrypt)."""
    for _ in range(100):
        path = os.path.join(directory, f".{base}.{os.urandom(4).hex()}{PARTIAL_SUFFIX}")
        try:
            fd = os.open(
                path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
            )
        except FileExistsError:
            continue
        return fd, path
    raise FileExistsError(errno.EEXIST, "no unused temporary file name", directory)


class AtomicFile:
    """A temporary file that becomes ``path`` on :meth:`commit`, or vanishes on :meth:`abort`.

    Created with mode 0600: until the user decides otherwise, decrypted output is as private
    as the key that produced it.
    """

    def __init__(self, path: str, *, force: bool) -> None:
        self.path = path
        self.force = force
        directory, base = os.path.split(os.path.abspath(path))
        self._dir = directory
        with io_errors("create output in", f"'{directory}'"):
            self.fd, self.tmp_path = _create_partial(directory, base)
        self._open = True

    def commit(self) -> None:
        """Make the output visible under its final name, durably: :meth:`sync`, then
        :meth:`publish`."""
        self.sync()
        self.publish()

    def sync(self) -> None:
        """Write the temporary file's data to disk and close it: the slow part of a commit
        (seconds for a large file), which an async caller runs in a thread and may be
        cancelled during; nothing is visible under the final name yet."""
        done = False
        try:
            with io_errors("write output", f"'{self.path}'"):
                os.fsync(self.fd)
                os.close(self.fd)
                self._open = False
            done = True
        finally:
            if not done:
                self.abort()

    def publish(self) -> None:
        """Give the synced temporary file its final name, durably. Quick: an async caller
        calls it directly, so that no cancellation can come between the output's appearing
        and the call's return (a cancelled call leaves no output)."""
        done = False
        try:
            with io_errors("write output", f"'{self.path}'"):
                if self.force:
                    os.replace(self.tmp_path, self.path)
                else:
                    self._link_no_clobber()
            done = True
        finally:
            if not done:
                self.abort()
        self._fsync_dir()

    def _link_no_clobber(self) -> None:
        # link() fails if OUT appeared meanwhile, where rename() would silently replace it.
        try:
            os.link(self.tmp_path, self.path)
        except FileExistsError as exc:
            raise UsageError(
                f"output '{self.path}' already exists; use {option('force')} to overwrite it"
            ) from exc
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            if os.path.lexists(self.path):  # filesystem without hard links
                raise UsageError(
                    f"output '{self.path}' already exists; use {option('force')} to overwrite it"
                ) from exc
            os.rename(self.tmp_path, self.path)
            return
        os.unlink(self.tmp_path)

    def _fsync_dir(self) -> None:
        with contextlib.suppress(OSError):
            dfd = os.open(self._dir, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def abort(self) -> None:
        """Remove the temporary file; OUT (if it existed) is untouched. Idempotent."""
        if self._open:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self._open = False
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp_path)
            partials_removed.append(self.path)
