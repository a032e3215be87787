"""Atomic output files: OUT appears complete or not at all.

Data goes to a temporary file in OUT's own directory (so the final rename cannot cross
filesystems), which is fsynced and then renamed over OUT. On any error or interruption the
temporary file is removed and an existing OUT is left untouched. After a SIGKILL only the
temporary file can remain; its name (``.OUT.XXXXXXXX.kstream-partial``) says what it is.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile

from kstream.errors import UsageError, io_errors

PARTIAL_SUFFIX = ".kstream-partial"


def check_output_path(path: str, *, force: bool, src: str | None = None) -> None:
    """Refuse outputs that would destroy data: an existing OUT without ``force``, IN itself,
    a directory, or anything that is not a regular file."""
    try:
        with io_errors("check output", f"'{path}'", passthrough=(FileNotFoundError,)):
            st = os.stat(path)
    except FileNotFoundError:
        return
    if src is not None:
        with contextlib.suppress(OSError):
            if os.path.samefile(src, path):
                raise UsageError(
                    f"input and output are the same file ('{path}'); write to a new file"
                )
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"output '{path}' is a directory; give a file name")
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"output '{path}' exists and is not a regular file; use '-' for stdout")
    if not force:
        raise UsageError(f"output '{path}' already exists; use --force to overwrite it")


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
            self.fd, self.tmp_path = tempfile.mkstemp(
                prefix=f".{base}.", suffix=PARTIAL_SUFFIX, dir=directory
            )
        self._open = True

    def commit(self) -> None:
        """Make the output visible under its final name, durably."""
        done = False
        try:
            with io_errors("write output", f"'{self.path}'"):
                os.fsync(self.fd)
                os.close(self.fd)
                self._open = False
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
                f"output '{self.path}' already exists; use --force to overwrite it"
            ) from exc
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            if os.path.lexists(self.path):  # filesystem without hard links
                raise UsageError(
                    f"output '{self.path}' already exists; use --force to overwrite it"
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
