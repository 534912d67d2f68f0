"""Writes small hand-made raw lakes in the raw lake's layout, for tests."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

UTC_MICROS = pa.timestamp("us", tz="UTC")
CUSTOMERS = pa.schema([("customer_id", pa.string()), ("signup_at", UTC_MICROS), ("country", pa.string()), ("city", pa.string())])
STORES = pa.schema([("store_id", pa.string()), ("name", pa.string()), ("category", pa.string()), ("city", pa.string()), ("country", pa.string())])
ORDERS = pa.schema(
    [("order_id", pa.string()), ("customer_id", pa.string()), ("store_id", pa.string()),
     ("created_at", UTC_MICROS), ("amount", pa.float64()), ("status", pa.string())]
)


def write_lake(
    root: Path,
    *,
    customers: list[tuple[str | None, datetime | None, str, str]],
    stores: list[tuple[str, str, str, str, str]],
    orders: list[tuple[Any, ...]],
    timestamp_type: pa.DataType = UTC_MICROS,
) -> None:
    """Orders are (order_id, customer_id, store_id, created_at, amount, status), and one without a
    created_at names the day folder it lies in as a seventh value. `timestamp_type` without a time
    zone writes naive timestamps, as pandas does."""
    customers_schema = CUSTOMERS.set(1, pa.field("signup_at", timestamp_type))
    orders_schema = ORDERS.set(3, pa.field("created_at", timestamp_type))
    raw = root / "raw"
    (raw / "customers").mkdir(parents=True, exist_ok=True)
    (raw / "stores").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([dict(zip(CUSTOMERS.names, c)) for c in customers], customers_schema), raw / "customers" / "part-0.parquet")
    pq.write_table(pa.Table.from_pylist([dict(zip(STORES.names, s)) for s in stores], STORES), raw / "stores" / "part-0.parquet")
    by_date: dict[str, list[dict]] = defaultdict(list)
    for order in orders:
        day = order[3] if order[3] is not None else order[6]
        by_date[day.date().isoformat()].append(dict(zip(ORDERS.names, order[:6])))
    for day, rows in by_date.items():
        folder = raw / "orders" / f"order_date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows, orders_schema), folder / "part-0.parquet")
