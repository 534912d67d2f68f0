"""An independent, plain-Python reading of the lake's layout and the segment types' semantics (docs/reference.md): what the Spark jobs must agree with.

It shares no code with `segmentation_assets`: it reads the lake with pyarrow and applies the
contract's words directly, customer by customer, with datetime arithmetic.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds

VALID_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")
NARROWING = ("store_id", "category", "city", "country")


def _valid(value: Any) -> bool:
    return isinstance(value, str) and VALID_ID.fullmatch(value) is not None


def _rows(path: Path, partitioned: bool = False) -> list[dict[str, Any]]:
    dataset = ds.dataset(path, format="parquet", partitioning="hive" if partitioned else None)
    return dataset.to_table().to_pylist()


def _cents(amount: float) -> int:
    return int(Decimal(amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


class ReferenceLake:
    def __init__(self, root: Path | str) -> None:
        raw = Path(root) / "raw"
        customers = [c for c in _rows(raw / "customers") if _valid(c["customer_id"]) and c["signup_at"] is not None]
        # A repeated id keeps its first row (earliest signup; then country, city).
        first: dict[str, dict[str, Any]] = {}
        for c in sorted(customers, key=lambda c: (c["signup_at"], c["country"] or "\uffff", c["city"] or "\uffff")):
            first.setdefault(c["customer_id"], c)
        self.customers = list(first.values())
        stores = [s for s in _rows(raw / "stores") if _valid(s["store_id"])]
        self.stores = {}
        for s in sorted(stores, key=lambda s: tuple(s[k] or "\uffff" for k in ("category", "city", "country", "name"))):
            self.stores.setdefault(s["store_id"], s)
        self.orders = [
            o
            for o in _rows(raw / "orders", partitioned=True)
            if all(_valid(o[k]) for k in ("order_id", "customer_id", "store_id"))
            and o["amount"] is not None
            and math.isfinite(o["amount"])
            and abs(o["amount"]) < 1e12  # the project's bound on one order (raw_data.MAX_ORDER_AMOUNT)
            and o["created_at"] is not None
            and o["status"] in ("delivered", "cancelled")
            and o["store_id"] in self.stores
        ]

    def _counted(self, as_of: datetime, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Delivered orders before T at stores with every narrowing attribute given."""
        counted = []
        for order in self.orders:
            store = self.stores[order["store_id"]]
            if order["status"] != "delivered" or not order["created_at"] < as_of:
                continue
            if all(params.get(a) is None or store[a] == params[a] for a in NARROWING):
                counted.append(order)
        return counted

    def new_customers(self, as_of: datetime, params: dict[str, Any]) -> set[str]:
        since = as_of - timedelta(days=params["max_days_since_signup"])
        orders_before: dict[str, int] = defaultdict(int)
        for order in self._counted(as_of, {}):
            orders_before[order["customer_id"]] += 1
        return {
            c["customer_id"]
            for c in self.customers
            if since <= c["signup_at"] < as_of
            and orders_before[c["customer_id"]] <= params.get("max_orders", 0)
            and params.get("city") in (None, c["city"])
            and params.get("country") in (None, c["country"])
        }

    def frequent_buyers(self, as_of: datetime, params: dict[str, Any]) -> set[str]:
        since = as_of - timedelta(days=params["lookback_days"])
        counts: dict[str, int] = defaultdict(int)
        for order in self._counted(as_of, params):
            if order["created_at"] >= since:
                counts[order["customer_id"]] += 1
        return {c for c, n in counts.items() if n >= params["min_orders"]}

    def high_spenders(self, as_of: datetime, params: dict[str, Any]) -> set[str]:
        since = as_of - timedelta(days=params["lookback_days"])
        cents: dict[str, int] = defaultdict(int)
        for order in self._counted(as_of, params):
            if order["created_at"] >= since:
                cents[order["customer_id"]] += _cents(order["amount"])
        # The threshold as the client wrote it (the shortest decimal of its double), exactly.
        threshold = Decimal(repr(params["min_total_amount"])) * 100
        return {c for c, total in cents.items() if total >= threshold}

    def lapsed_customers(self, as_of: datetime, params: dict[str, Any]) -> set[str]:
        since = as_of - timedelta(days=params["inactive_days"])
        lifetime: dict[str, int] = defaultdict(int)
        recent: set[str] = set()
        for order in self._counted(as_of, params):
            lifetime[order["customer_id"]] += 1
            if order["created_at"] >= since:
                recent.add(order["customer_id"])
        return {c for c, n in lifetime.items() if n >= params["min_lifetime_orders"] and c not in recent}

    def members(self, segment_type: str, as_of: datetime, params: dict[str, Any]) -> set[str]:
        return getattr(self, segment_type)(as_of, params)
