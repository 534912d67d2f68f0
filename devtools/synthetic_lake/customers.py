"""The population: the valid customers, with their home city, signup time and ordering habits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

from .clock import US_PER_DAY, day_start_us, eu_summer_time, local_time_of_day_us, local_to_utc_in_day
from .reference_data import CITIES, city_standard_utc_offsets, city_weights
from .stores import Stores

# Signups spread over (at least) the 2 years up to the end of `end`, so that the lake has both a long
# history and a steady share of customers who signed up within the last days.
HISTORY_DAYS = 730
SIGNUP_GROWTH = 2.0  # signup density at the end of the history is this many times that at its start
SIGNUP_TIME_OF_DAY = ((10.5, 2.0, 0.30), (15.0, 2.5, 0.30), (21.0, 1.8, 0.30))

# Order rate per customer and (average) day: lognormal, so most order rarely and a few several
# times a day.
RATE_MEDIAN_PER_DAY = 0.066
RATE_SIGMA = 1.25
RATE_MAX_PER_DAY = 4.0
CHURN_SHARE = 0.25  # share of customers who stop ordering at a random day of the window (lapsed)
SPENDER_SIGMA = 0.35  # per-customer amount multiplier (lognormal, median 1)


@dataclass(frozen=True)
class Population:
    """The valid customers in signup order: customer `i` has the id number `i + 1`, so `c00000001`
    is the oldest."""

    city: np.ndarray  # index into CITIES
    signup_us: np.ndarray  # microseconds since the epoch, UTC
    spender: np.ndarray  # multiplier of every order amount
    order_rate: np.ndarray  # expected orders per average day
    last_order_day: np.ndarray  # day index in the window (0 = its first day); the last one unless lapsed
    favourite_store: np.ndarray  # index into the stores, in the home city

    @property
    def count(self) -> int:
        return int(self.city.size)


def home_city_probabilities(stores: Stores) -> np.ndarray:
    """Cities by size, leaving out any without a store: customers order mostly in their own city."""
    weights = city_weights() * stores.cities_with_stores()
    return weights / weights.sum()


def draw_population(rng: np.random.Generator, customers: int, days: int, end: date, stores: Stores) -> Population:
    """`customers` customers for a window of `days` days ending with `end`. The draws are made in a
    fixed order from `rng`: changing that order changes every row."""
    city = rng.choice(len(CITIES), size=customers, p=home_city_probabilities(stores))
    signup_us = _draw_signup_times(rng, city, days, end)
    by_signup = np.argsort(signup_us, kind="stable")  # ids are given in signup order
    signup_us, city = signup_us[by_signup], city[by_signup]
    spender = rng.lognormal(0.0, SPENDER_SIGMA, customers)
    order_rate = np.minimum(rng.lognormal(np.log(RATE_MEDIAN_PER_DAY), RATE_SIGMA, customers), RATE_MAX_PER_DAY)
    last_order_day = np.where(rng.random(customers) < CHURN_SHARE, rng.integers(0, days, customers), days - 1)
    favourite_store = stores.pick_in_cities(rng.random(customers), city)
    return Population(
        city=city,
        signup_us=signup_us,
        spender=spender,
        order_rate=order_rate,
        last_order_day=last_order_day,
        favourite_store=favourite_store,
    )


def _draw_signup_times(rng: np.random.Generator, city: np.ndarray, days: int, end: date) -> np.ndarray:
    """Signup instants (UTC microseconds) over the history up to the end of `end`, growing mildly over
    time, at a local time of day of the customer's city."""
    n = city.size
    history = max(HISTORY_DAYS, days + 60)
    # Linear density rising from 1 to SIGNUP_GROWTH over the history: inverse CDF of a trapezoid.
    g = SIGNUP_GROWTH
    u = rng.random(n)
    x = (-1.0 + np.sqrt(1.0 + (g * g - 1.0) * u)) / (g - 1.0)  # in [0, 1), denser near 1
    signup_day = (day_start_us(end) // US_PER_DAY) - history + 1 + np.floor(x * history).astype(np.int64)
    local_time = local_time_of_day_us(rng, n, SIGNUP_TIME_OF_DAY)
    utc_offset = city_standard_utc_offsets()[city] + eu_summer_time(signup_day)
    return signup_day * US_PER_DAY + local_to_utc_in_day(local_time, utc_offset)
