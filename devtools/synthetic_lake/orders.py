"""The order stream: how many orders each customer places, on which day, at which store, at what
time, for how much, and whether it is cancelled."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

from .clock import US_PER_DAY, day_start_us, eu_summer_time, local_time_of_day_us, local_to_utc_in_day
from .customers import Population
from .reference_data import category_values, city_standard_utc_offsets
from .stores import Stores

WEEKDAY_WEIGHT = np.array([0.90, 0.90, 0.95, 1.00, 1.15, 1.20, 1.05])  # Monday first: busier Fri and weekend
ORDER_TIME_OF_DAY = ((9.0, 1.0, 0.08), (13.6, 1.1, 0.30), (17.0, 1.6, 0.17), (20.8, 1.2, 0.38))  # meals
P_FAVOURITE = 0.45  # share of a customer's orders at their favourite store
P_OWN_CITY = 0.90  # share (favourites included) at stores of the customer's own city; the rest anywhere


@dataclass(frozen=True)
class OrderStream:
    """The valid orders, in the order they were drawn (not yet by time)."""

    customer: np.ndarray  # index into the population
    store: np.ndarray  # index into the stores
    created_us: np.ndarray  # microseconds since the epoch, UTC
    amount: np.ndarray  # EUR, 2 decimals
    cancelled: np.ndarray  # bool

    @property
    def count(self) -> int:
        return int(self.customer.size)


def draw_orders(
    rng: np.random.Generator, population: Population, stores: Stores, start: date, days: int
) -> OrderStream:
    """Orders in [start 00:00 UTC, start + days 00:00 UTC), never before the customer's signup. The draws
    are made in a fixed order from `rng`: changing that order changes every row."""
    start_us = day_start_us(start)
    day_weight = WEEKDAY_WEIGHT[(start.weekday() + np.arange(days)) % 7]
    day_weight_cumsum = np.concatenate([[0.0], np.cumsum(day_weight)])
    first_day = np.clip((population.signup_us - start_us) // US_PER_DAY, 0, None)  # signup day or window start

    counts = _order_counts(rng, population, first_day, start_us, day_weight, day_weight_cumsum)
    customer = np.repeat(np.arange(population.count, dtype=np.int64), counts)
    day = _draw_order_days(rng, first_day[customer], population.last_order_day[customer], day_weight_cumsum)
    store = _draw_order_stores(rng, customer, population, stores)
    days_since_epoch = start_us // US_PER_DAY + day
    created_us = _draw_created_at(rng, days_since_epoch, stores.city[store], population.signup_us[customer])
    amount, cancelled = _draw_amounts_and_status(rng, stores.category[store], population.spender[customer])
    return OrderStream(customer=customer, store=store, created_us=created_us, amount=amount, cancelled=cancelled)


def _order_counts(
    rng: np.random.Generator,
    population: Population,
    first_day: np.ndarray,
    start_us: int,
    day_weight: np.ndarray,
    day_weight_cumsum: np.ndarray,
) -> np.ndarray:
    """Each customer's number of orders: Poisson with their rate times their exposure in "average days",
    the weekday-weighted days from their first to their last order day, less the part of the signup
    day before the signup."""
    days = day_weight.size
    last_day = population.last_order_day
    active = last_day >= first_day
    signup_since_start_us = population.signup_us - start_us
    window_weight = day_weight_cumsum[np.minimum(last_day + 1, days)] - day_weight_cumsum[np.minimum(first_day, days)]
    active_weight = np.where(active, window_weight, 0.0)
    before_signup = np.where(
        signup_since_start_us >= 0, (signup_since_start_us % US_PER_DAY) / US_PER_DAY, 0.0
    )
    exposure = np.clip(active_weight / day_weight.mean() - before_signup * active, 0.0, None)
    counts = rng.poisson(population.order_rate * exposure)
    counts[~active] = 0
    return counts


def _draw_order_days(
    rng: np.random.Generator, first_day: np.ndarray, last_day: np.ndarray, day_weight_cumsum: np.ndarray
) -> np.ndarray:
    """For each order, a day in [first_day, last_day] weighted by weekday."""
    low = day_weight_cumsum[first_day]
    target = low + rng.random(first_day.size) * (day_weight_cumsum[last_day + 1] - low)
    return np.clip(np.searchsorted(day_weight_cumsum, target, side="right") - 1, first_day, last_day)


def _draw_order_stores(
    rng: np.random.Generator, customer: np.ndarray, population: Population, stores: Stores
) -> np.ndarray:
    """The customer's favourite store, else a store of their own city, else any store (by popularity)."""
    n = customer.size
    r = rng.random(n)
    in_own_city = stores.pick_in_cities(rng.random(n), population.city[customer])
    anywhere = stores.pick_anywhere(rng.random(n))
    return np.where(
        r < P_FAVOURITE, population.favourite_store[customer], np.where(r < P_OWN_CITY, in_own_city, anywhere)
    )


def _draw_created_at(
    rng: np.random.Generator, days_since_epoch: np.ndarray, store_city: np.ndarray, signup_us: np.ndarray
) -> np.ndarray:
    """A local time of day in the store's country (meal peaks), stored in UTC on the chosen UTC day."""
    local_time = local_time_of_day_us(rng, days_since_epoch.size, ORDER_TIME_OF_DAY)
    utc_offset = city_standard_utc_offsets()[store_city] + eu_summer_time(days_since_epoch)
    created_us = days_since_epoch * US_PER_DAY + local_to_utc_in_day(local_time, utc_offset)
    # Never before signup: orders drawn before it on the signup day move to later that same day.
    early = created_us < signup_us
    if early.any():
        signup = signup_us[early]
        day_end = (signup // US_PER_DAY + 1) * US_PER_DAY
        moved = signup + np.floor(rng.random(int(early.sum())) * (day_end - signup)).astype(np.int64)
        created_us[early] = np.clip(moved, signup, day_end - 1)
    return created_us


def _draw_amounts_and_status(
    rng: np.random.Generator, category: np.ndarray, spender: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Lognormal amounts by store category and customer (EUR, 2 decimals, at least 1), and the
    category's cancellation rate."""
    median = category_values("median_amount")[category]
    sigma = category_values("amount_sigma")[category]
    amount = median * spender * np.exp(sigma * rng.standard_normal(category.size))
    amount = np.round(np.maximum(amount, 1.0), 2)
    cancelled = rng.random(category.size) < category_values("cancel_rate")[category]
    return amount, cancelled
