"""An encrypted Parquet dataset, written and read by Dask on a local cluster of worker
processes through the kstream:: fsspec filesystem; one file opened with kstream.open.

Every file in the folder is a kstream file; each worker reads the key from the key file
itself (the task graph carries its path, never the key), and fetches only the segments
that the columns it reads live in.

Needs: pip install 'kstream[fsspec]' 'dask[distributed]' pyarrow pandas
Run: python examples/dask_parquet.py
"""

# requires: dask.distributed, pyarrow, pandas, fsspec

import os
import tempfile

import dask.dataframe as dd
import pandas as pd
import pyarrow.parquet as pq
from dask.distributed import Client, LocalCluster

import kstream


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        key_file = os.path.join(tmp, "data.key")
        kstream.Key.generate(bits=256).save(key_file)
        storage = {"kstream": {"key_file": key_file}}
        url = f"kstream::file://{tmp}/sales"

        frame = pd.DataFrame(
            {
                "region": [("north", "south", "east", "west")[i % 4] for i in range(40_000)],
                "amount": [i % 97 for i in range(40_000)],
            }
        )
        with (
            LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
            Client(cluster),
        ):
            dd.from_pandas(frame, npartitions=4).to_parquet(url, storage_options=storage)
            sales = dd.read_parquet(url, storage_options=storage)
            totals = sales.groupby("region")["amount"].sum().compute()

        names = sorted(os.listdir(os.path.join(tmp, "sales")))
        print("encrypted files:", names)
        with kstream.open(os.path.join(tmp, "sales", names[0]), key_file=key_file) as f:
            amounts = pq.read_table(f, columns=["amount"]).column("amount").to_pylist()
            print("segments decrypted for one column:", f.segments_decrypted)

        same = totals.sort_index().equals(frame.groupby("region")["amount"].sum().sort_index())
        same = same and amounts == frame["amount"][: len(amounts)].tolist()
        print(totals.sort_index().to_dict())
        print("round trip ok:", same)
        if not same:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
