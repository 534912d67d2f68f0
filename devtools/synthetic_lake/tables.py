"""The three raw tables as Arrow tables, from the drawn stores, customers, orders and dirty rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa

from .clock import US_PER_DAY, day_start_us
from .customers import Population
from .dirty_rows import DirtyRows
from .ids import customer_id_width, format_ids, order_id_width, store_id_width
from .orders import OrderStream
from .reference_data import CATEGORIES, CITIES
from .schemas import CUSTOMERS_SCHEMA, ORDERS_SCHEMA, STORES_SCHEMA, TIMESTAMP
from .stores import Stores

_COUNTRY_OF_CITY = np.array([city.country for city in CITIES], dtype=object)
_NAME_OF_CITY = np.array([city.name for city in CITIES], dtype=object)


@dataclass(frozen=True)
class LakeTables:
    customers: pa.Table  # valid customers in signup order, then the invalid ones
    stores: pa.Table
    orders: pa.Table  # in created_at order; order ids follow that order
    day_bounds: np.ndarray  # the orders of window day i are rows day_bounds[i] .. day_bounds[i + 1]
    cancelled_orders: int
    invalid_rows: int


def assemble_tables(
    population: Population, stores: Stores, orders: OrderStream, dirty: DirtyRows, start: date, days: int
) -> LakeTables:
    valid_customer_ids = format_ids("c", np.arange(1, population.count + 1), customer_id_width(population.count))
    customer_ids = pa.concat_arrays(
        [valid_customer_ids, pa.array(dirty.invalid_customers.ids, pa.string())]
    )
    store_ids = format_ids("s", np.arange(1, stores.count + 1), store_id_width(stores.count))
    orders_table = _orders_table(orders, dirty, customer_ids, store_ids)
    return LakeTables(
        customers=_customers_table(customer_ids, population, dirty),
        stores=_stores_table(store_ids, stores),
        orders=orders_table,
        day_bounds=_day_bounds(orders_table, start, days),
        cancelled_orders=int(orders.cancelled.sum()),
        invalid_rows=dirty.invalid_rows,
    )


def _customers_table(customer_ids: pa.Array, population: Population, dirty: DirtyRows) -> pa.Table:
    signup_us = np.concatenate([population.signup_us, dirty.invalid_customers.signup_us])
    city = np.concatenate([population.city, dirty.invalid_customers.city])
    return pa.table(
        [
            customer_ids,
            pa.array(signup_us, type=pa.int64()).cast(TIMESTAMP),
            pa.array(_COUNTRY_OF_CITY[city].tolist(), pa.string()),
            pa.array(_NAME_OF_CITY[city].tolist(), pa.string()),
        ],
        schema=CUSTOMERS_SCHEMA,
    )


def _stores_table(store_ids: pa.Array, stores: Stores) -> pa.Table:
    return pa.table(
        [
            store_ids,
            pa.array(stores.names, pa.string()),
            pa.array([CATEGORIES[c].name for c in stores.category.tolist()], pa.string()),
            pa.array(_NAME_OF_CITY[stores.city].tolist(), pa.string()),
            pa.array(_COUNTRY_OF_CITY[stores.city].tolist(), pa.string()),
        ],
        schema=STORES_SCHEMA,
    )


def _orders_table(orders: OrderStream, dirty: DirtyRows, customer_ids: pa.Array, store_ids: pa.Array) -> pa.Table:
    keys = dirty.order_keys
    # By created_at, ties kept in drawing order, so that the ids (given in this order) are stable.
    by_time = np.argsort(orders.created_us, kind="stable")
    customer = pa.array(keys.customer[by_time], type=pa.int64(), mask=keys.customer_is_null[by_time])
    all_store_ids = pa.concat_arrays([store_ids, pa.array(keys.unknown_store_ids, pa.string())])
    status_names = pa.array(["delivered", "cancelled"], pa.string())
    return pa.table(
        [
            format_ids("o", np.arange(1, orders.count + 1), order_id_width(orders.count)),
            customer_ids.take(customer),
            all_store_ids.take(pa.array(keys.store[by_time], type=pa.int64())),
            pa.array(orders.created_us[by_time], type=pa.int64()).cast(TIMESTAMP),
            pa.array(orders.amount[by_time], type=pa.float64()),
            status_names.take(pa.array(orders.cancelled[by_time].astype(np.int64))),
        ],
        schema=ORDERS_SCHEMA,
    )


def _day_bounds(orders_table: pa.Table, start: date, days: int) -> np.ndarray:
    """The row range of each UTC day of the window in the time-sorted orders: one file per day."""
    created_us = orders_table["created_at"].cast(pa.int64()).to_numpy()
    start_us = day_start_us(start)
    day_starts = start_us + np.arange(days + 1) * US_PER_DAY
    assert created_us.size == 0 or (created_us[0] >= day_starts[0] and created_us[-1] < day_starts[-1])
    return np.searchsorted(created_us, day_starts, side="left")
