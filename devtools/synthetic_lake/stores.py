"""The stores: where they are, what they sell, what they are called and how popular they are."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .reference_data import CATEGORIES, CITIES, STORE_NAME_QUALIFIERS, category_values, city_weights, store_word

MIN_STORES = 20
CUSTOMERS_PER_STORE = 100


def store_count(customers: int) -> int:
    """About one store per 100 customers, and never fewer than 20."""
    return max(MIN_STORES, customers // CUSTOMERS_PER_STORE)


@dataclass(frozen=True)
class Stores:
    """The stores, sorted by city and then most popular first, so that each city's stores are the one
    contiguous index range `city_start[c] .. city_end[c]` (exclusive)."""

    city: np.ndarray  # index into CITIES
    category: np.ndarray  # index into CATEGORIES
    popularity: np.ndarray  # long-tailed, relative
    names: list[str]
    city_start: np.ndarray
    city_end: np.ndarray
    popularity_cumsum: np.ndarray  # cumulative popularity with a leading 0, for weighted picks

    @property
    def count(self) -> int:
        return int(self.city.size)

    def cities_with_stores(self) -> np.ndarray:
        """Per city (CITIES order): whether it has at least one store."""
        return self.city_end > self.city_start

    def pick_in_cities(self, u: np.ndarray, cities: np.ndarray) -> np.ndarray:
        """For each uniform draw `u[i]`, a store of `cities[i]`, weighted by popularity."""
        return _weighted_pick_in_ranges(u, self.city_start[cities], self.city_end[cities], self.popularity_cumsum)

    def pick_anywhere(self, u: np.ndarray) -> np.ndarray:
        """For each uniform draw, any store, weighted by popularity."""
        n = u.size
        everywhere_start, everywhere_end = np.zeros(n, np.int64), np.full(n, self.count)
        return _weighted_pick_in_ranges(u, everywhere_start, everywhere_end, self.popularity_cumsum)


def _weighted_pick_in_ranges(
    u: np.ndarray, range_start: np.ndarray, range_end: np.ndarray, weights_cumsum: np.ndarray
) -> np.ndarray:
    """For each row, an index in [range_start, range_end) with probability proportional to the weights
    whose cumulative sum (with a leading 0) is `weights_cumsum`: one vectorised search, no loop."""
    low = weights_cumsum[range_start]
    high = weights_cumsum[range_end]
    target = low + u * (high - low)
    index = np.searchsorted(weights_cumsum, target, side="right") - 1
    return np.clip(index, range_start, range_end - 1)


def draw_stores(rng: np.random.Generator, count: int) -> Stores:
    city = _place_stores(rng, count)
    category_share = category_values("store_share")
    category = rng.choice(len(CATEGORIES), size=count, p=category_share / category_share.sum())
    popularity = rng.lognormal(0.0, 0.8, count) * category_values("popularity")[category]

    by_city_then_popularity = np.lexsort((-popularity, city))
    city = city[by_city_then_popularity]
    category = category[by_city_then_popularity]
    popularity = popularity[by_city_then_popularity]

    names = _name_stores(rng, city, category)
    all_cities = np.arange(len(CITIES))
    return Stores(
        city=city,
        category=category,
        popularity=popularity,
        names=names,
        city_start=np.searchsorted(city, all_cities, side="left"),
        city_end=np.searchsorted(city, all_cities, side="right"),
        popularity_cumsum=np.concatenate([[0.0], np.cumsum(popularity)]),
    )


def _place_stores(rng: np.random.Generator, count: int) -> np.ndarray:
    """Each store's city: every city gets one (biggest first) while there are stores to give, so every
    big city has a store; the rest go to cities by size."""
    weights = city_weights()
    biggest_first = np.argsort(-weights, kind="stable")
    one_each = biggest_first[: min(count, len(CITIES))]
    by_size = rng.choice(len(CITIES), size=count - one_each.size, p=weights / weights.sum())
    return np.concatenate([one_each, by_size]).astype(np.int64)


def _name_stores(rng: np.random.Generator, city: np.ndarray, category: np.ndarray) -> list[str]:
    """A name in the language of the store's country, e.g. "Bäckerei Luna"."""
    qualifier = rng.integers(0, len(STORE_NAME_QUALIFIERS), city.size)
    # One Python iteration per store (~customers / 100 rows), not per order.
    return [
        f"{store_word(CATEGORIES[cat].name, CITIES[c].country)} {STORE_NAME_QUALIFIERS[q]}"
        for c, cat, q in zip(city.tolist(), category.tolist(), qualifier.tolist())
    ]
