"""`generate_lake`: check the arguments, draw the lake, write it, and say what was written."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import numpy as np

from .customers import draw_population
from .dirty_rows import draw_dirty_rows
from .orders import draw_orders
from .stores import draw_stores, store_count
from .tables import LakeTables, assemble_tables
from .writer import write_raw_lake


@dataclass(frozen=True)
class LakeSummary:
    customers: int  # rows written to each table, dirty rows included
    stores: int
    orders: int
    cancelled_orders: int  # orders with status "cancelled"
    invalid_rows: int  # invalid customer rows plus dirty orders
    days: int
    start: date
    end: date
    seconds: float


def generate_lake(
    out_uri: str,
    *,
    customers: int,
    days: int,
    seed: int,
    end: date,
    dirty_fraction: float = 0.0005,
) -> LakeSummary:
    """Write a deterministic synthetic raw lake under `<out_uri>/raw/`, replacing what was there.

    Orders cover the UTC days `end - days + 1` .. `end` inclusive. See the package docstring for the
    shape of the data and the meaning of the summary's counts.
    """
    started = time.perf_counter()
    end = _as_date(end)
    _check_arguments(customers, days, seed, dirty_fraction)
    tables = build_tables(customers, days, seed, end, float(dirty_fraction))
    start = end - timedelta(days=days - 1)
    write_raw_lake(out_uri, tables, start, days)
    return LakeSummary(
        customers=tables.customers.num_rows,
        stores=tables.stores.num_rows,
        orders=tables.orders.num_rows,
        cancelled_orders=tables.cancelled_orders,
        invalid_rows=tables.invalid_rows,
        days=days,
        start=start,
        end=end,
        seconds=round(time.perf_counter() - started, 3),
    )


def build_tables(customers: int, days: int, seed: int, end: date, dirty_fraction: float) -> LakeTables:
    """The lake's tables, in memory; the same arguments give the same rows in the same order."""
    # One generator per part, spawned from the seed: the dirty rows draw from their own, so asking for
    # them leaves the clean rows' draws (stores, customers, orders) unchanged.
    stores_rng, customers_rng, orders_rng, dirty_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)
    )
    start = end - timedelta(days=days - 1)
    stores = draw_stores(stores_rng, store_count(customers))
    population = draw_population(customers_rng, customers, days, end, stores)
    orders = draw_orders(orders_rng, population, stores, start, days)
    dirty = draw_dirty_rows(dirty_rng, dirty_fraction, population, stores, orders, start)
    return assemble_tables(population, stores, orders, dirty, start, days)


def _as_date(end: date | datetime | str) -> date:
    if isinstance(end, str):
        end = date.fromisoformat(end)
    if isinstance(end, datetime):  # a datetime is a date too; keep only its (UTC) calendar date
        end = (end.astimezone(timezone.utc) if end.tzinfo else end).date()
    if not isinstance(end, date):
        raise ValueError(f"end must be a date (YYYY-MM-DD), got {end!r}")
    return end


def _check_arguments(customers: int, days: int, seed: int, dirty_fraction: float) -> None:
    for name, value, lowest in (("customers", customers, 1), ("days", days, 1), ("seed", seed, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < lowest:
            kind = "a positive" if lowest == 1 else "a non-negative"
            raise ValueError(f"{name} must be {kind} integer, got {value!r}")
    if not (0.0 <= float(dirty_fraction) <= 0.5):
        raise ValueError(f"dirty_fraction must be in [0, 0.5], got {dirty_fraction!r}")
