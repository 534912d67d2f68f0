"""An independent, plain-Python reading of SPEC 3 and 4: what the Spark jobs must agree with.

It shares no code with `segmentation_assets`: it reads the lake with pyarrow and applies the
contract's words directly, row by row.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds

VALID_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")


def _valid(value: Any) -> bool:
    return isinstance(value, str) and VALID_ID.fullmatch(value) is not None


def _rows(path: Path, partitioned: bool = False) -> list[dict[str, Any]]:
    dataset = ds.dataset(path, format="parquet", partitioning="hive" if partitioned else None)
    return dataset.to_table().to_pylist()


class ReferenceLake:
    def __init__(self, root: Path) -> None:
        raw = Path(root) / "raw"
        self.customers = [c for c in _rows(raw / "customers") if _valid(c["customer_id"]) and c["signup_at"] is not None]
        self.stores = {s["store_id"]: s for s in _rows(raw / "stores") if _valid(s["store_id"])}
        self.orders = [
            o
            for o in _rows(raw / "orders", partitioned=True)
            if all(_valid(o[k]) for k in ("order_id", "customer_id", "store_id"))
            and o["amount"] is not None
            and o["store_id"] in self.stores
        ]

    def delivered_before(self, as_of: datetime) -> list[dict[str, Any]]:
        return [o for o in self.orders if o["status"] == "delivered" and o["created_at"] < as_of]

    def new_customers(self, as_of: datetime, params: dict[str, Any]) -> set[str]:
        since = as_of - timedelta(days=params["max_days_since_signup"])
        orders_before: dict[str, int] = defaultdict(int)
        for order in self.delivered_before(as_of):
            orders_before[order["customer_id"]] += 1
        return {
            c["customer_id"]
            for c in self.customers
            if since <= c["signup_at"] < as_of
            and orders_before[c["customer_id"]] <= params.get("max_orders", 0)
            and params.get("city") in (None, c["city"])
            and params.get("country") in (None, c["country"])
        }

    def members(self, segment_type: str, as_of: datetime, params: dict[str, Any]) -> set[str]:
        return getattr(self, segment_type)(as_of, params)
