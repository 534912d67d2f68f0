"""Writing the raw tables as Parquet under `<out>/raw/`, to a local folder or any URI that
`pyarrow.fs.FileSystem.from_uri` understands (`s3://bucket/prefix`, with the S3 endpoint and
credentials from the standard AWS environment variables). All I/O goes through the pyarrow filesystem."""

from __future__ import annotations

import os
import posixpath
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .tables import LakeTables

PART_FILE = "part-00000.parquet"
PARQUET_COMPRESSION = "zstd"
RAW_TABLES = ("customers", "stores", "orders")


def resolve_output(out_uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and root path of `out_uri` (a local path or a URI)."""
    if "://" not in out_uri:
        out_uri = os.path.abspath(os.path.expanduser(out_uri))  # from_uri needs an absolute local path
    fs, path = pafs.FileSystem.from_uri(out_uri)
    return fs, path.rstrip("/")


def write_raw_lake(out_uri: str, tables: LakeTables, start: date, days: int) -> None:
    """Replace whatever is under `<out>/raw/` with the tables; nothing else under `<out>` is touched.

    Layout: `raw/customers/part-00000.parquet`, `raw/stores/part-00000.parquet` and
    `raw/orders/order_date=YYYY-MM-DD/part-00000.parquet`, one per UTC day of the window, empty or not.
    """
    fs, root = resolve_output(out_uri)
    raw = posixpath.join(root, "raw") if root else "raw"
    files = _part_files(raw, tables, start, days)
    # The tables are computed before the old raw data is removed, to keep that window short.
    if fs.get_file_info(raw).type != pafs.FileType.NotFound:
        fs.delete_dir(raw)
    # Object stores need no directories (and S3 would get empty marker objects); others do.
    if not isinstance(fs, pafs.S3FileSystem):
        for table in RAW_TABLES:
            fs.create_dir(posixpath.join(raw, table), recursive=True)
        for path, _ in files[2:]:  # the orders' day partitions
            fs.create_dir(posixpath.dirname(path), recursive=True)
    _write_in_parallel(fs, files)


def _part_files(raw: str, tables: LakeTables, start: date, days: int) -> list[tuple[str, pa.Table]]:
    """(path, rows) of every file: customers, stores, then the orders of each day, hive-partitioned by
    the UTC date of `created_at`."""
    files = [
        (posixpath.join(raw, "customers", PART_FILE), tables.customers),
        (posixpath.join(raw, "stores", PART_FILE), tables.stores),
    ]
    for i in range(days):
        partition = posixpath.join(raw, "orders", f"order_date={(start + timedelta(days=i)).isoformat()}")
        first, end = int(tables.day_bounds[i]), int(tables.day_bounds[i + 1])
        files.append((posixpath.join(partition, PART_FILE), tables.orders.slice(first, end - first)))
    return files


def _write_in_parallel(fs: pafs.FileSystem, files: list[tuple[str, pa.Table]]) -> None:
    """Several files at once (compression and, on S3, uploads overlap); the first failure is raised."""
    with ThreadPoolExecutor(max_workers=min(8, max(2, os.cpu_count() or 2))) as pool:
        futures = [
            pool.submit(pq.write_table, table, path, filesystem=fs, compression=PARQUET_COMPRESSION)
            for path, table in files
        ]
        for future in futures:
            future.result()
