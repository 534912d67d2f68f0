"""A deterministic, realistic synthetic raw lake, behind `segmentation lake generate` and the demo.

`generate_lake(out_uri, customers=..., days=..., seed=..., end=...)` writes::

    <out>/raw/customers/part-00000.parquet
    <out>/raw/stores/part-00000.parquet
    <out>/raw/orders/order_date=YYYY-MM-DD/part-00000.parquet   (one per day, start..end inclusive)

`out_uri` is a local path or an `s3://bucket/prefix` URI (see `writer`). Whatever is under
`<out>/raw/` is replaced; nothing else under `<out>` is touched.

What the data looks like:

* Cities in ES, PT, IT, FR, DE and NL with real names (native spelling, so some are non-ASCII, e.g.
  "Málaga", "München"), weighted by size: Madrid and Barcelona are the biggest (`reference_data`).
* Stores: ~1 per 100 customers (at least 20), every big city has at least one; a category
  (grocery, restaurant, pharmacy, bakery, fashion, electronics, pets, flowers, books, liquor), a name
  in the country's language, and a long-tailed popularity (`stores`).
* Customers sign up over the 730 days before the end of `end` (or longer when `days` is longer), with a
  mild growth, so a steady share signed up within the last `days` (and the last 30 days). Customer ids
  are given in signup order (`c00000001` is the oldest) (`customers`).
* Orders only in [start 00:00 UTC, end+1 00:00 UTC), never before the customer's signup. Each customer
  has a lognormal order rate (most order rarely, a few several times a day), about a quarter stop
  ordering at some point of the window (lapsed), orders go mostly to the customer's favourite store or
  other stores of their own city, and ~10% anywhere. Busier Fridays and weekends; time of day has
  breakfast, lunch and dinner peaks in the store country's local time (CET/WET with EU summer time),
  stored as UTC and partitioned by the UTC date. Amounts are lognormal by category and customer
  (EUR, 2 decimals); ~6% of orders are cancelled. Order ids are given in `created_at` order (`orders`).
* Dirty rows (only when `dirty_fraction > 0`): a handful (3..10) of extra customer rows with invalid
  ids, and `dirty_fraction` of the orders (at least 3) split evenly among an invalid customer id
  (one of those invalid customers: containing a space or starting with `-`), a null customer_id, and
  a well-formed store id that is not in the stores table. `LakeSummary.invalid_rows` counts both
  (`dirty_rows`).

`LakeSummary.customers / stores / orders` are the rows written to each table (dirty rows included);
`cancelled_orders` is how many of the orders have `status = 'cancelled'`.

Determinism: the same arguments give the same rows, in the same files, in the same order (numpy
generators from `SeedSequence(seed)`, no wall-clock or hash-order dependence).
"""

from __future__ import annotations

from .generate import LakeSummary, generate_lake
from .reference_data import CATEGORIES, CITIES, COUNTRY_UTC_OFFSET
from .schemas import CUSTOMERS_SCHEMA, ORDERS_SCHEMA, STORES_SCHEMA, TIMESTAMP
from .writer import PARQUET_COMPRESSION, PART_FILE

__all__ = [
    "CATEGORIES",
    "CITIES",
    "COUNTRY_UTC_OFFSET",
    "CUSTOMERS_SCHEMA",
    "LakeSummary",
    "ORDERS_SCHEMA",
    "PARQUET_COMPRESSION",
    "PART_FILE",
    "STORES_SCHEMA",
    "TIMESTAMP",
    "generate_lake",
]
