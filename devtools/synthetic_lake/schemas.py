"""The Arrow schemas of the three raw tables. Timestamps are UTC, in microseconds."""

from __future__ import annotations

import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="UTC")

CUSTOMERS_SCHEMA = pa.schema(
    [
        pa.field("customer_id", pa.string()),
        pa.field("signup_at", TIMESTAMP),
        pa.field("country", pa.string()),
        pa.field("city", pa.string()),
    ]
)
STORES_SCHEMA = pa.schema(
    [
        pa.field("store_id", pa.string()),
        pa.field("name", pa.string()),
        pa.field("category", pa.string()),
        pa.field("city", pa.string()),
        pa.field("country", pa.string()),
    ]
)
ORDERS_SCHEMA = pa.schema(
    [
        pa.field("order_id", pa.string()),
        pa.field("customer_id", pa.string()),
        pa.field("store_id", pa.string()),
        pa.field("created_at", TIMESTAMP),
        pa.field("amount", pa.float64()),  # EUR
        pa.field("status", pa.string()),  # "delivered" or "cancelled"
    ]
)
