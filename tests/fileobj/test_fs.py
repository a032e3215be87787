"""The ``kstream::`` fsspec filesystem: over memory://, over a real S3 API (moto's server,
started here, through s3fs), and under Dask on a LocalCluster of worker processes."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sealed import PASSPHRASE, S, seal_file

import kstream
from kstream.errors import UsageError

fsspec = pytest.importorskip("fsspec", reason="the kstream:: filesystem needs fsspec")


@pytest.fixture
def memory() -> Iterator[Any]:
    fs = fsspec.filesystem("memory")
    yield fs
    fs.store.clear()
    fs.pseudo_dirs[:] = [""]


def test_write_and_read_through_memory(memory: Any, key_bytes: bytes, key_file: Path) -> None:
    options = {"kstream": {"key_file": str(key_file), "segment_size": S}}
    plain = os.urandom(10 * S + 3)
    with fsspec.open("kstream::memory://data/x.bin.kst", "wb", **options) as f:
        f.write(plain)
    blob = memory.cat_file("/data/x.bin.kst")
    assert len(blob) > len(plain)  # the store holds the ciphertext
    with kstream.open(io.BytesIO(blob), key=kstream.Key(key_bytes)) as back:
        assert back.read() == plain
    with fsspec.open("kstream::memory://data/x.bin.kst", "rb", **options) as f:
        f.seek(5 * S - 2)
        assert f.read(4) == plain[5 * S - 2 : 5 * S + 2]
    fs, path = fsspec.core.url_to_fs("kstream::memory://data/x.bin.kst", **options)
    assert fs.info(path)["size"] == len(plain)
    assert fs.cat_file(path, 7, 20) == plain[7:20]
    [entry] = fs.ls("/data", detail=True)
    assert (entry["size"], entry["ciphertext_size"]) == (len(plain), len(blob))
    with fsspec.open("kstream::memory://data/t.txt.kst", "wt", **options) as f:
        f.write("héllo\n" * 3)
    with fsspec.open("kstream::memory://data/t.txt.kst", "rt", **options) as f:
        assert f.read() == "héllo\n" * 3


def test_passphrase_files_and_keyring_names_are_the_only_secrets(
    memory: Any, passphrase_file: Path, key_file: Path
) -> None:
    memory.pipe_file("/p.kst", seal_file(b"by passphrase", passphrase=PASSPHRASE))
    with fsspec.open(
        "kstream::memory://p.kst", kstream={"passphrase_file": str(passphrase_file)}
    ) as f:
        assert f.read() == b"by passphrase"
    for secret in ("key", "passphrase"):
        with pytest.raises(UsageError, match="key_file=, key_name= or passphrase_file= instead"):
            fsspec.filesystem("kstream", target_protocol="memory", **{secret: b"x" * 32})
    fs = fsspec.filesystem("kstream", target_protocol="memory", key_file=str(key_file))
    with pytest.raises(UsageError, match="exactly one of key_file="):
        fsspec.filesystem("kstream", target_protocol="memory").open("/p.kst")
    # what Dask puts into its task graph: the key's path, never its bytes
    graph = pickle.dumps(fs)
    assert str(key_file).encode() in graph
    assert key_file.read_text().strip().encode() not in graph
    assert bytes.fromhex(key_file.read_text()) not in graph


def test_a_failed_write_leaves_nothing_on_a_local_target(tmp_path: Path, key_file: Path) -> None:
    """Through the filesystem's own open (fsspec.open's wrapper closes its files normally
    whatever happened inside ``with``, for every filesystem)."""
    url = f"kstream::file://{tmp_path}/out.kst"
    fs, path = fsspec.core.url_to_fs(url, kstream={"key_file": str(key_file)})
    with pytest.raises(RuntimeError), fs.open(path, "wb") as f:
        f.write(b"half")
        raise RuntimeError("the producer failed")
    assert not (tmp_path / "out.kst").exists()
    with fs.open(path, "wb") as f:
        f.write(b"whole")
    with kstream.open(tmp_path / "out.kst", key_file=key_file) as back:
        assert back.read() == b"whole"


# --------------------------------------------------------------------------- S3


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, Any]]:
    """A local S3 API server (moto's) and the s3fs options that reach it."""
    pytest.importorskip("s3fs", reason="S3 through fsspec needs s3fs")
    server_module = pytest.importorskip("moto.server", reason="the local S3 server is moto's")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options = {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": f"http://{host}:{port}", "region_name": "eu-west-1"},
        "skip_instance_cache": True,
    }
    import s3fs

    s3fs.S3FileSystem(**options).mkdir("bucket")
    yield options
    server.stop()


def test_s3_reads_fetch_only_the_segments_they_need(
    s3: dict[str, Any], key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import s3fs

    options = {"kstream": {"key_file": str(key_file), "segment_size": 1024}, "s3": s3}
    plain = os.urandom(50 * 1024 + 7)
    with fsspec.open("kstream::s3://bucket/big.kst", "wb", **options) as f:
        f.write(plain)
    fetched: list[tuple[int, int]] = []
    real = s3fs.core.S3File._fetch_range

    def fetch(self: Any, start: int, end: int) -> bytes:
        fetched.append((start, end))
        return real(self, start, end)  # type: ignore[no-any-return]

    monkeypatch.setattr(s3fs.core.S3File, "_fetch_range", fetch)
    with fsspec.open("kstream::s3://bucket/big.kst", "rb", **options) as f:
        f.seek(20 * 1024 + 100)
        assert f.read(10) == plain[20 * 1024 + 100 : 20 * 1024 + 110]
    unit = 1024 + 20
    last = 32 + 50 * unit
    assert fetched == [
        (0, 32),
        (last, last + 4),
        (last, last + 27),
        (32 + 20 * unit, 32 + 21 * unit),
    ]


def test_pandas_parquet_on_s3(s3: dict[str, Any], key_file: Path) -> None:
    pd = pytest.importorskip("pandas", reason="pandas reads and writes Parquet here")
    pytest.importorskip("pyarrow", reason="pandas' Parquet engine")
    frame = pd.DataFrame({"a": range(5000), "b": [f"row {i}" for i in range(5000)]})
    storage = {"kstream": {"key_file": str(key_file)}, "s3": s3}
    frame.to_parquet("kstream::s3://bucket/frame.parquet.kst", storage_options=storage)
    back = pd.read_parquet(
        "kstream::s3://bucket/frame.parquet.kst", storage_options=storage, columns=["b"]
    )
    pd.testing.assert_frame_equal(back, frame[["b"]])


# --------------------------------------------------------------------------- Dask


def test_dask_reads_and_writes_encrypted_parquet_on_a_local_cluster(
    tmp_path: Path, key_file: Path
) -> None:
    dd = pytest.importorskip("dask.dataframe", reason="Dask's dataframes read Parquet here")
    distributed = pytest.importorskip("distributed", reason="the LocalCluster is distributed's")
    pd = pytest.importorskip("pandas", reason="Dask's partitions are pandas frames")
    pytest.importorskip("pyarrow", reason="Dask's Parquet engine")
    frame = pd.DataFrame(
        {"x": range(20_000), "y": [i * 0.5 for i in range(20_000)], "s": ["k"] * 20_000}
    )
    storage = {"kstream": {"key_file": str(key_file)}}
    encrypted = f"kstream::file://{tmp_path}/enc"
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        parts = dd.from_pandas(frame, npartitions=4)
        parts.to_parquet(encrypted, storage_options=storage)
        parts.to_parquet(tmp_path / "plain")
        names = sorted(os.listdir(tmp_path / "enc"))
        assert len(names) == 4
        back = dd.read_parquet(encrypted, storage_options=storage).compute()
        want = dd.read_parquet(tmp_path / "plain").compute()
    pd.testing.assert_frame_equal(back, want)
    assert back["x"].tolist() == list(range(20_000))
    # what Dask wrote, `kstream decrypt` reads: plain Parquet files
    import pyarrow.parquet as pq

    first = tmp_path / "enc" / names[0]
    subprocess.run(
        [sys.executable, "-m", "kstream", "decrypt", "-k", key_file, first, tmp_path / "p0"],
        check=True,
        capture_output=True,
    )
    assert pq.read_table(tmp_path / "p0").num_rows == 5000
