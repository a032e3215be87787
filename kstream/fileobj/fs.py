"""The ``kstream`` fsspec filesystem: kstream files on any fsspec filesystem, read and
written as their plaintext (``pip install 'kstream[fsspec]'``).

It is a chained filesystem, layered over another one::

    fsspec.open("kstream::s3://bucket/x.parquet.kst", kstream={"key_file": "k.key"})
    pandas.read_parquet("kstream::file:///data/x.parquet.kst",
                        storage_options={"kstream": {"key_name": "backup"}})

Opening a file for reading opens the target's file without a read-ahead cache and hands it
to :func:`kstream.open`: a read fetches the byte ranges of the segments it touches (plus,
at open, the header and the last segment). A sequential reader also has the next segments
fetched ahead, in a background thread (not on ``memory://``, where that gains nothing).

Writing encrypts as it goes; where the target's files write through a temporary (local
files, S3 multipart uploads: fsspec's ``autocommit=False``) the object appears only once
complete, and a failed write is discarded.

Keys travel only as references: ``key_file`` (a path), ``key_name`` (a kernel keyring
key's name) or ``passphrase_file`` (a path). The filesystem's options go into fsspec's
instance cache, its URLs and, pickled, into every Dask task that reads a file; a reference
there gives a worker the means to find the key on its own machine, never the key itself.
Raw ``key=`` or ``passphrase=`` options are refused.

Listings and ``info`` report a file's plaintext size, from its ciphertext size and the
segment size in its header (one small read per file; not authenticated until the file is
opened with the key).
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar

import fsspec
from fsspec.implementations.chained import ChainedFileSystem

from kstream.errors import KstreamError, UsageError
from kstream.fileobj.body import DEFAULT_CACHE_SEGMENTS
from kstream.fileobj.opener import open_file
from kstream.format import DEFAULT_SEGMENT, HEADER_SIZE, KDF_BLOCK_SIZE, Header, plaintext_size

#: The options that name where the key is; exactly one is needed to open a file.
KEY_REFERENCES = ("key_file", "key_name", "passphrase_file")
#: Options that would put a secret itself into URLs, caches and task graphs.
REFUSED = ("key", "passphrase")


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


class KstreamFileSystem(ChainedFileSystem):  # type: ignore[misc]
    """kstream files on the ``target_protocol`` filesystem, as their plaintext."""

    protocol: ClassVar[str] = "kstream"

    def __init__(
        self,
        target_protocol: str | None = None,
        target_options: dict[str, Any] | None = None,
        fs: fsspec.AbstractFileSystem | None = None,
        fo: str | None = None,
        *,
        key_file: str | None = None,
        key_name: str | None = None,
        passphrase_file: str | None = None,
        backend: str = "auto",
        cache_segments: int = DEFAULT_CACHE_SEGMENTS,
        segment_size: int = DEFAULT_SEGMENT,
        work_factor: int | None = None,
        max_work_factor: int | None = None,
        **kwargs: Any,
    ) -> None:
        refused = [name for name in REFUSED if name in kwargs]
        if refused:
            raise UsageError(
                f"the kstream filesystem does not take {refused[0]}=: its options are "
                "copied into URLs, caches and Dask's task graphs; give key_file=, "
                "key_name= or passphrase_file= instead"
            )
        super().__init__(**kwargs)
        if fs is None:
            fs = fsspec.filesystem(target_protocol or "file", **(target_options or {}))
        self.fs = fs
        self.key_options: dict[str, Any] = {
            name: value
            for name, value in (
                ("key_file", key_file),
                ("key_name", key_name),
                ("passphrase_file", passphrase_file),
            )
            if value is not None
        }
        self.open_options: dict[str, Any] = {
            "backend": backend,
            "cache_segments": cache_segments,
            "segment_size": segment_size,
            "work_factor": work_factor,
            "max_work_factor": max_work_factor,
        }

    def _keys(self) -> dict[str, Any]:
        if len(self.key_options) != 1:
            raise UsageError(
                "the kstream filesystem needs exactly one of key_file=, key_name= and "
                "passphrase_file= (e.g. storage_options={'kstream': {'key_file': PATH}})"
            )
        return self.key_options

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        keys = self._keys()
        # Segments are read whole, at their offsets: a read-ahead cache below would only
        # fetch bytes no read asked for.
        kwargs.pop("cache_type", None)
        if mode == "rb":
            raw = self.fs.open(path, "rb", cache_type="none", **kwargs)
            # A read in memory is a copy that holds the GIL: nothing to overlap.
            ahead = "memory" not in _protocols(self.fs)
            return open_file(
                raw, "rb", close_file=True, read_ahead=ahead, **keys, **self.open_options
            )
        if mode in ("wb", "xb"):
            if mode == "xb" and self.fs.exists(path):
                raise FileExistsError(path)
            raw = self.fs.open(path, "wb", autocommit=False, **kwargs)
            return open_file(raw, "wb", close_file=True, **keys, **self.open_options)
        raise ValueError(
            f"kstream files open with mode 'rb' or 'wb', not {mode!r} (format v1 is "
            "written front to back: no appending or updating in place)"
        )

    # --- the target's tree, with plaintext sizes --------------------------------------------

    def _plain_size(self, entry: dict[str, Any]) -> dict[str, Any]:
        if entry.get("type") != "file" or entry.get("size") is None:
            return entry
        with contextlib.suppress(KstreamError, OSError, ValueError):
            data = self.fs.cat_file(entry["name"], 0, HEADER_SIZE + KDF_BLOCK_SIZE)
            header = Header.parse(data)
            plain = plaintext_size(entry["size"] - header.size, header.auth_param)
            if plain is not None:
                return {**entry, "size": plain, "ciphertext_size": entry["size"]}
        return entry

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> Any:
        entries = self.fs.ls(path, detail=detail, **kwargs)
        return [self._plain_size(e) for e in entries] if detail else entries

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        return self._plain_size(self.fs.info(path, **kwargs))

    def exists(self, path: str, **kwargs: Any) -> bool:
        return bool(self.fs.exists(path, **kwargs))

    def isdir(self, path: str) -> bool:
        return bool(self.fs.isdir(path))

    def isfile(self, path: str) -> bool:
        return bool(self.fs.isfile(path))

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        self.fs.mkdir(path, create_parents=create_parents, **kwargs)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        self.fs.makedirs(path, exist_ok=exist_ok)

    def rmdir(self, path: str) -> None:
        self.fs.rmdir(path)

    def rm_file(self, path: str) -> None:
        self.fs.rm_file(path)

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        self.fs.rm(path, recursive=recursive, maxdepth=maxdepth)

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        """A copy of the ciphertext: the same key opens it."""
        self.fs.cp_file(path1, path2, **kwargs)

    def mv(self, path1: str, path2: str, **kwargs: Any) -> None:
        self.fs.mv(path1, path2, **kwargs)

    def modified(self, path: str) -> Any:
        return self.fs.modified(path)

    def created(self, path: str) -> Any:
        return self.fs.created(path)

    def ukey(self, path: str) -> str:
        return str(self.fs.ukey(path))
