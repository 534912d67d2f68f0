"""Dirty rows, written only when asked (`dirty_fraction > 0`), so that the pipeline's handling of bad
input has something to count and leave out: a few extra customers with invalid ids, and orders with
an invalid customer id, a null customer id, or a well-formed id of a store that does not exist."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

from .clock import US_PER_DAY, day_start_us
from .customers import Population, home_city_probabilities
from .ids import customer_id_width, store_id_width
from .orders import OrderStream
from .reference_data import CITIES
from .stores import Stores

# Invalid customer ids: a space inside or around, or a leading "-" (a valid id starts with a letter or
# digit and has no spaces).
INVALID_CUSTOMER_ID_SHAPES = ("-c{:0{w}d}", "c {:0{w}d}", " c{:0{w}d}", "c{:0{w}d} ", "-{:0{w}d}")
UNKNOWN_STORES = 5


@dataclass(frozen=True)
class InvalidCustomers:
    """Extra customer rows, after the valid ones, whose ids break the id rule."""

    ids: list[str]
    signup_us: np.ndarray
    city: np.ndarray  # index into CITIES

    @property
    def count(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class OrderKeys:
    """Every order's customer and store once dirtied. `customer` indexes the valid customers followed
    by the invalid ones; `store` indexes the stores followed by `unknown_store_ids`."""

    customer: np.ndarray
    customer_is_null: np.ndarray
    store: np.ndarray
    unknown_store_ids: list[str]
    dirty_orders: int


@dataclass(frozen=True)
class DirtyRows:
    invalid_customers: InvalidCustomers
    order_keys: OrderKeys

    @property
    def invalid_rows(self) -> int:
        """Invalid customer rows plus dirty orders."""
        return self.invalid_customers.count + self.order_keys.dirty_orders


def draw_dirty_rows(
    rng: np.random.Generator,
    dirty_fraction: float,
    population: Population,
    stores: Stores,
    orders: OrderStream,
    start: date,
) -> DirtyRows:
    """Without dirt (`dirty_fraction == 0`) the orders keep their drawn customer and store, and the dirty
    rows' generator is not used at all."""
    if dirty_fraction <= 0:
        no_customers = InvalidCustomers(ids=[], signup_us=np.zeros(0, np.int64), city=np.zeros(0, np.int64))
        clean_keys = OrderKeys(
            customer=orders.customer,
            customer_is_null=np.zeros(orders.count, dtype=bool),
            store=orders.store,
            unknown_store_ids=[],
            dirty_orders=0,
        )
        return DirtyRows(no_customers, clean_keys)
    invalid_customers = _draw_invalid_customers(rng, dirty_fraction, population.count, stores, start)
    order_keys = _dirty_orders(rng, dirty_fraction, orders, population.count, invalid_customers.count, stores.count)
    return DirtyRows(invalid_customers, order_keys)


def _draw_invalid_customers(
    rng: np.random.Generator, dirty_fraction: float, customers: int, stores: Stores, start: date
) -> InvalidCustomers:
    """A handful (3..10) of customers with invalid ids, who signed up some time in the year before the
    window."""
    count = int(np.clip(round(customers * dirty_fraction), 3, 10))
    width = customer_id_width(customers)
    shapes = INVALID_CUSTOMER_ID_SHAPES
    ids = [shapes[k % len(shapes)].format(customers + 1 + k, w=width) for k in range(count)]
    city = rng.choice(len(CITIES), size=count, p=home_city_probabilities(stores))
    days_before = rng.integers(1, 365, count)
    signup_us = day_start_us(start) - days_before * US_PER_DAY + rng.integers(0, US_PER_DAY, count)
    return InvalidCustomers(ids=ids, signup_us=signup_us, city=city)


def _dirty_orders(
    rng: np.random.Generator,
    dirty_fraction: float,
    orders: OrderStream,
    customers: int,
    invalid_customers: int,
    stores: int,
) -> OrderKeys:
    """`dirty_fraction` of the orders (at least 3 when there are that many), split evenly among an
    invalid customer id, a null customer id and an unknown store."""
    count = min(orders.count, max(3, int(np.ceil(dirty_fraction * orders.count))))
    dirty = np.sort(rng.choice(orders.count, size=count, replace=False))
    kind = np.arange(count) % 3
    rng.shuffle(kind)

    customer = orders.customer.copy()
    invalid_id = dirty[kind == 0]
    customer[invalid_id] = customers + rng.integers(0, invalid_customers, invalid_id.size)
    customer_is_null = np.zeros(orders.count, dtype=bool)
    customer_is_null[dirty[kind == 1]] = True

    # Well-formed ids numbered past the real stores, so none of them is in the stores table.
    width = store_id_width(stores)
    unknown_store_ids = [f"s{stores + 101 + k * 37:0{width}d}" for k in range(UNKNOWN_STORES)]
    store = orders.store.copy()
    unknown = dirty[kind == 2]
    store[unknown] = stores + rng.integers(0, UNKNOWN_STORES, unknown.size)
    return OrderKeys(
        customer=customer,
        customer_is_null=customer_is_null,
        store=store,
        unknown_store_ids=unknown_store_ids,
        dirty_orders=count,
    )
