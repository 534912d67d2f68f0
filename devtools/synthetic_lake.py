"""A deterministic, realistic synthetic raw lake (SPEC 3), behind `segmentation lake generate` (SPEC 6).

`generate_lake(out_uri, customers=..., days=..., seed=..., end=...)` writes::

    <out>/raw/customers/part-00000.parquet
    <out>/raw/stores/part-00000.parquet
    <out>/raw/orders/order_date=YYYY-MM-DD/part-00000.parquet   (one per day, start..end inclusive)

`out_uri` is a local path or any URI `pyarrow.fs.FileSystem.from_uri` understands (`s3://bucket/prefix`;
the S3 endpoint and credentials come from the standard AWS environment variables). All I/O goes through
the pyarrow filesystem. Whatever is under `<out>/raw/` is replaced; nothing else under `<out>` is touched.

What the data looks like (choices the SPEC leaves open):

* Cities in ES, PT, IT, FR, DE and NL with real names (native spelling, so some are non-ASCII, e.g.
  "Málaga", "München"), weighted by size: Madrid and Barcelona are the biggest.
* Stores: ~1 per 100 customers (at least 20), every big city has at least one; a category
  (grocery, restaurant, pharmacy, bakery, fashion, electronics, pets, flowers, books, liquor), a name
  in the country's language, and a long-tailed popularity.
* Customers sign up over the 730 days before the end of `end` (or longer when `days` is longer), with a
  mild growth, so a steady share signed up within the last `days` (and the last 30 days). Customer ids
  are given in signup order (`c00000001` is the oldest).
* Orders only in [start 00:00 UTC, end+1 00:00 UTC), never before the customer's signup. Each customer
  has a lognormal order rate (most order rarely, a few several times a day), about a quarter stop
  ordering at some point of the window (lapsed), orders go mostly to the customer's favourite store or
  other stores of their own city, and ~10% anywhere. Busier Fridays and weekends; time of day has
  breakfast, lunch and dinner peaks in the store country's local time (CET/WET with EU summer time),
  stored as UTC and partitioned by the UTC date. Amounts are lognormal by category and customer
  (EUR, 2 decimals); ~6% of orders are cancelled. Order ids are given in `created_at` order.
* Dirty rows (only when `dirty_fraction > 0`): a handful (3..10) of extra customer rows with invalid
  ids, and `dirty_fraction` of the orders (at least 3) split evenly among an invalid customer id
  (one of those invalid customers: containing a space or starting with `-`), a null customer_id, and
  a well-formed store id that is not in the stores table. `LakeSummary.invalid_rows` counts both.

`LakeSummary.customers / stores / orders` are the rows written to each table (dirty rows included);
`cancelled_orders` is how many of the orders have `status = 'cancelled'`.

Determinism: the same arguments give the same rows, in the same files, in the same order (numpy
generators from `SeedSequence(seed)`, no wall-clock or hash-order dependence).
"""

from __future__ import annotations

import os
import posixpath
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

__all__ = [
    "CUSTOMERS_SCHEMA",
    "LakeSummary",
    "ORDERS_SCHEMA",
    "STORES_SCHEMA",
    "generate_lake",
]

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
        pa.field("amount", pa.float64()),
        pa.field("status", pa.string()),
    ]
)

PART_FILE = "part-00000.parquet"
PARQUET_COMPRESSION = "zstd"

_US_PER_SECOND = 1_000_000
_US_PER_HOUR = 3600 * _US_PER_SECOND
_US_PER_DAY = 24 * _US_PER_HOUR
_EPOCH = date(1970, 1, 1)

# --------------------------------------------------------------------------------------------------
# Reference data. Tuples (not dicts/sets) so that the order is part of the code, not of hashing.
# --------------------------------------------------------------------------------------------------

# (country, city, relative weight) - roughly metropolitan size, Madrid and Barcelona the biggest.
CITIES: tuple[tuple[str, str, float], ...] = (
    ("ES", "Madrid", 20.0),
    ("ES", "Barcelona", 16.0),
    ("ES", "Valencia", 4.5),
    ("ES", "Sevilla", 3.5),
    ("ES", "Málaga", 2.5),
    ("ES", "Zaragoza", 2.0),
    ("ES", "Bilbao", 1.5),
    ("PT", "Lisboa", 5.0),
    ("PT", "Porto", 3.5),
    ("IT", "Milano", 5.5),
    ("IT", "Roma", 5.0),
    ("IT", "Torino", 2.0),
    ("IT", "Napoli", 2.0),
    ("FR", "Paris", 7.0),
    ("FR", "Lyon", 2.5),
    ("FR", "Marseille", 2.0),
    ("FR", "Toulouse", 1.5),
    ("DE", "Berlin", 4.0),
    ("DE", "München", 2.5),
    ("DE", "Hamburg", 2.0),
    ("DE", "Köln", 1.5),
    ("NL", "Amsterdam", 2.5),
    ("NL", "Rotterdam", 1.5),
)

# Standard-time UTC offset (hours); all of them follow EU summer time.
COUNTRY_UTC_OFFSET: tuple[tuple[str, int], ...] = (
    ("ES", 1),
    ("PT", 0),
    ("IT", 1),
    ("FR", 1),
    ("DE", 1),
    ("NL", 1),
)

# (category, share of stores, order popularity factor, median amount EUR, lognormal sigma, cancel rate)
CATEGORIES: tuple[tuple[str, float, float, float, float, float], ...] = (
    ("grocery", 0.22, 1.6, 42.0, 0.55, 0.05),
    ("restaurant", 0.28, 1.5, 24.0, 0.40, 0.07),
    ("pharmacy", 0.10, 0.8, 19.0, 0.60, 0.04),
    ("bakery", 0.07, 0.9, 11.0, 0.45, 0.05),
    ("fashion", 0.07, 0.5, 58.0, 0.60, 0.09),
    ("electronics", 0.05, 0.3, 125.0, 0.85, 0.10),
    ("pets", 0.06, 0.6, 36.0, 0.50, 0.05),
    ("flowers", 0.05, 0.4, 32.0, 0.40, 0.06),
    ("books", 0.04, 0.4, 21.0, 0.45, 0.05),
    ("liquor", 0.06, 0.6, 29.0, 0.50, 0.06),
)

# Words for store names: category -> one per language ("es", "pt", "it", "fr", "de", "nl").
_LANGS = ("es", "pt", "it", "fr", "de", "nl")
_COUNTRY_LANG: tuple[tuple[str, str], ...] = (
    ("ES", "es"),
    ("PT", "pt"),
    ("IT", "it"),
    ("FR", "fr"),
    ("DE", "de"),
    ("NL", "nl"),
)
_CATEGORY_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("grocery", ("Supermercado", "Mercearia", "Alimentari", "Épicerie", "Lebensmittel", "Supermarkt")),
    ("restaurant", ("Restaurante", "Restaurante", "Trattoria", "Bistrot", "Restaurant", "Eetcafé")),
    ("pharmacy", ("Farmacia", "Farmácia", "Farmacia", "Pharmacie", "Apotheke", "Apotheek")),
    ("bakery", ("Panadería", "Padaria", "Panificio", "Boulangerie", "Bäckerei", "Bakkerij")),
    ("fashion", ("Moda", "Moda", "Moda", "Mode", "Mode", "Mode")),
    ("electronics", ("Electrónica", "Eletrónica", "Elettronica", "Électronique", "Elektronik", "Elektronica")),
    ("pets", ("Mascotas", "Animais", "Animali", "Animalerie", "Tierbedarf", "Dierenwinkel")),
    ("flowers", ("Floristería", "Florista", "Fioraio", "Fleuriste", "Blumen", "Bloemen")),
    ("books", ("Librería", "Livraria", "Libreria", "Librairie", "Buchhandlung", "Boekhandel")),
    ("liquor", ("Bodega", "Garrafeira", "Enoteca", "Cave", "Weinhandlung", "Slijterij")),
)
_NAME_QUALIFIERS: tuple[str, ...] = (
    "Central", "Norte", "Sur", "Plaza", "Mercado", "Express", "Nova", "Prime", "Bella", "Luna",
    "Sol", "Verde", "Azul", "Mar", "Avenida", "Estación", "Puerto", "Roma", "Lux", "Urban",
    "Corner", "24h", "Familiar", "Real", "Victoria", "Alba", "Olivo", "Rio", "Porta", "Oro",
)

# Day-of-week order intensity, Monday first.
_WEEKDAY_WEIGHT = np.array([0.90, 0.90, 0.95, 1.00, 1.15, 1.20, 1.05])

# Local time-of-day mixtures: (mean hour, sd hours, weight); the rest of the weight is uniform.
_ORDER_TOD = ((9.0, 1.0, 0.08), (13.6, 1.1, 0.30), (17.0, 1.6, 0.17), (20.8, 1.2, 0.38))
_SIGNUP_TOD = ((10.5, 2.0, 0.30), (15.0, 2.5, 0.30), (21.0, 1.8, 0.30))

# Order behaviour.
_HISTORY_DAYS = 730  # signups spread over (at least) the 2 years up to the end of `end`
_SIGNUP_GROWTH = 2.0  # signup density at the end of the history is this many times that at its start
_RATE_MEDIAN_PER_DAY = 0.066  # lognormal order rate per customer and (average) day
_RATE_SIGMA = 1.25
_RATE_MAX_PER_DAY = 4.0
_CHURN_SHARE = 0.25  # share of customers who stop ordering at a random day of the window
_P_FAVOURITE = 0.45  # share of a customer's orders at their favourite store
_P_OWN_CITY = 0.90  # share (incl. the favourites) at stores of the customer's own city
_SPENDER_SIGMA = 0.35  # per-customer amount multiplier (lognormal, median 1)
_MIN_STORES = 20
_CUSTOMERS_PER_STORE = 100


@dataclass(frozen=True)
class LakeSummary:
    customers: int
    stores: int
    orders: int
    cancelled_orders: int
    invalid_rows: int
    days: int
    start: date
    end: date
    seconds: float


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _day_us(d: date) -> int:
    """Microseconds since the epoch at 00:00 UTC of `d`."""
    return (d - _EPOCH).days * _US_PER_DAY


def _last_sunday(year: int, month: int) -> date:
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    last = nxt - timedelta(days=1)
    return last - timedelta(days=(last.weekday() + 1) % 7)


def _eu_summer_time(days_since_epoch: np.ndarray) -> np.ndarray:
    """1 where the UTC day is in EU summer time (last Sunday of March .. last Sunday of October), else 0."""
    if days_since_epoch.size == 0:
        return np.zeros(0, dtype=np.int64)
    lo, hi = int(days_since_epoch.min()), int(days_since_epoch.max())
    years = range((_EPOCH + timedelta(days=lo)).year, (_EPOCH + timedelta(days=hi)).year + 1)
    out = np.zeros(days_since_epoch.shape, dtype=np.int64)
    for y in years:  # one iteration per calendar year, not per row
        a = (_last_sunday(y, 3) - _EPOCH).days
        b = (_last_sunday(y, 10) - _EPOCH).days
        out[(days_since_epoch >= a) & (days_since_epoch < b)] = 1
    return out


def _time_of_day_us(rng: np.random.Generator, n: int, mixture) -> np.ndarray:
    """Local time of day in microseconds, drawn from a mixture of normal peaks plus a uniform floor."""
    weights = np.array([w for _, _, w in mixture] + [1.0 - sum(w for _, _, w in mixture)])
    means = np.array([m for m, _, _ in mixture] + [12.0])
    sds = np.array([s for _, s, _ in mixture] + [0.0])
    comp = np.searchsorted(np.cumsum(weights)[:-1], rng.random(n), side="right")
    hours = means[comp] + sds[comp] * rng.standard_normal(n)
    uniform = comp == len(mixture)
    hours[uniform] = rng.random(int(uniform.sum())) * 24.0
    us = np.floor(np.mod(hours, 24.0) * _US_PER_HOUR).astype(np.int64)
    return np.clip(us, 0, _US_PER_DAY - 1)


def _local_to_utc_in_day(local_tod_us: np.ndarray, offset_hours: np.ndarray) -> np.ndarray:
    """Shift a local time of day to UTC, wrapping inside the same UTC day (keeps the chosen UTC date)."""
    return np.mod(local_tod_us - offset_hours.astype(np.int64) * _US_PER_HOUR, _US_PER_DAY)


def _format_ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """`prefix` + zero-padded decimal numbers, vectorised through Arrow."""
    digits = pa.array(numbers.astype(np.int64), type=pa.int64()).cast(pa.string())
    padded = pc.utf8_lpad(digits, width=width, padding="0")
    return pc.binary_join_element_wise(prefix, padded, "")


def _weighted_choice_in_segments(
    u: np.ndarray, seg_start: np.ndarray, seg_end: np.ndarray, cum: np.ndarray
) -> np.ndarray:
    """For each row pick an index in [seg_start, seg_end) with probability proportional to the weights
    whose cumulative sum (with a leading 0) is `cum`."""
    lo = cum[seg_start]
    hi = cum[seg_end]
    target = lo + u * (hi - lo)
    idx = np.searchsorted(cum, target, side="right") - 1
    return np.clip(idx, seg_start, seg_end - 1)


def _resolve(out_uri: str) -> tuple[pafs.FileSystem, str]:
    if "://" not in out_uri:
        out_uri = os.path.abspath(os.path.expanduser(out_uri))  # from_uri needs an absolute local path
    fs, path = pafs.FileSystem.from_uri(out_uri)
    return fs, path.rstrip("/")


# --------------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------------


def _make_stores(rng: np.random.Generator, n_stores: int):
    n_cities = len(CITIES)
    city_w = np.array([w for _, _, w in CITIES])
    # Every city (biggest first) gets one store while there are stores to give, the rest by size.
    by_size = np.argsort(-city_w, kind="stable")
    first = by_size[: min(n_stores, n_cities)]
    rest = rng.choice(n_cities, size=n_stores - first.size, p=city_w / city_w.sum())
    store_city = np.concatenate([first, rest]).astype(np.int64)

    cat_share = np.array([c[1] for c in CATEGORIES])
    store_cat = rng.choice(len(CATEGORIES), size=n_stores, p=cat_share / cat_share.sum())
    popularity = rng.lognormal(0.0, 0.8, n_stores) * np.array([c[2] for c in CATEGORIES])[store_cat]

    # Sort stores by (city, -popularity) so that each city's stores are one contiguous segment.
    order = np.lexsort((-popularity, store_city))
    store_city, store_cat, popularity = store_city[order], store_cat[order], popularity[order]

    countries = [c for c, _, _ in CITIES]
    lang_of = dict(_COUNTRY_LANG)
    words = dict(_CATEGORY_WORDS)
    qual_idx = rng.integers(0, len(_NAME_QUALIFIERS), n_stores)
    # One Python iteration per store (~customers/100 rows), not per order.
    names = [
        f"{words[CATEGORIES[cat][0]][_LANGS.index(lang_of[countries[city]])]} {_NAME_QUALIFIERS[q]}"
        for city, cat, q in zip(store_city.tolist(), store_cat.tolist(), qual_idx.tolist())
    ]
    return store_city, store_cat, popularity, names


def _build(customers: int, days: int, seed: int, end: date, dirty_fraction: float):
    rng_stores, rng_customers, rng_orders, rng_dirty = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)
    )
    start = end - timedelta(days=days - 1)
    start_us = _day_us(start)
    end_us = _day_us(end + timedelta(days=1))  # exclusive
    countries = np.array([c for c, _, _ in CITIES], dtype=object)
    city_names = np.array([n for _, n, _ in CITIES], dtype=object)
    offset_of = dict(COUNTRY_UTC_OFFSET)
    city_offset = np.array([offset_of[c] for c, _, _ in CITIES], dtype=np.int64)

    # ---- stores ---------------------------------------------------------------------------------
    n_stores = max(_MIN_STORES, customers // _CUSTOMERS_PER_STORE)
    store_city, store_cat, popularity, store_names = _make_stores(rng_stores, n_stores)
    n_cities = len(CITIES)
    city_store_start = np.searchsorted(store_city, np.arange(n_cities), side="left")
    city_store_end = np.searchsorted(store_city, np.arange(n_cities), side="right")
    has_stores = city_store_end > city_store_start
    pop_cum = np.concatenate([[0.0], np.cumsum(popularity)])

    # ---- customers ------------------------------------------------------------------------------
    rng = rng_customers
    city_w = np.array([w for _, _, w in CITIES]) * has_stores
    cust_city = rng.choice(n_cities, size=customers, p=city_w / city_w.sum())
    history = max(_HISTORY_DAYS, days + 60)
    # Linear density rising from 1 to _SIGNUP_GROWTH over the history: inverse CDF of a trapezoid.
    g = _SIGNUP_GROWTH
    u = rng.random(customers)
    x = (-1.0 + np.sqrt(1.0 + (g * g - 1.0) * u)) / (g - 1.0)  # in [0, 1), denser near 1
    signup_day = (_day_us(end) // _US_PER_DAY) - history + 1 + np.floor(x * history).astype(np.int64)
    signup_tod_local = _time_of_day_us(rng, customers, _SIGNUP_TOD)
    offset = city_offset[cust_city] + _eu_summer_time(signup_day)
    signup_us = signup_day * _US_PER_DAY + _local_to_utc_in_day(signup_tod_local, offset)
    # Ids in signup order.
    order = np.argsort(signup_us, kind="stable")
    signup_us, cust_city = signup_us[order], cust_city[order]
    spender = rng.lognormal(0.0, _SPENDER_SIGMA, customers)
    rate = np.minimum(rng.lognormal(np.log(_RATE_MEDIAN_PER_DAY), _RATE_SIGMA, customers), _RATE_MAX_PER_DAY)
    churn_day = np.where(
        rng.random(customers) < _CHURN_SHARE, rng.integers(0, days, customers), days - 1
    )
    fav_store = _weighted_choice_in_segments(
        rng.random(customers), city_store_start[cust_city], city_store_end[cust_city], pop_cum
    )

    # ---- orders per customer --------------------------------------------------------------------
    rng = rng_orders
    weekday = (start.weekday() + np.arange(days)) % 7
    day_w = _WEEKDAY_WEIGHT[weekday]
    day_cum = np.concatenate([[0.0], np.cumsum(day_w)])
    signup_rel_us = signup_us - start_us
    first_day = np.clip(signup_rel_us // _US_PER_DAY, 0, None)
    last_day = churn_day
    # Exposure in "average days": the weighted days in [first_day, last_day], less the part of the
    # signup day before the signup.
    first_c = np.minimum(first_day, days)
    span_w = np.where(last_day >= first_day, day_cum[np.minimum(last_day + 1, days)] - day_cum[first_c], 0.0)
    part = np.where(signup_rel_us >= 0, (signup_rel_us % _US_PER_DAY) / _US_PER_DAY, 0.0)
    exposure = np.clip(span_w / day_w.mean() - part * (last_day >= first_day), 0.0, None)
    counts = rng.poisson(rate * exposure)
    counts[last_day < first_day] = 0
    cust_idx = np.repeat(np.arange(customers, dtype=np.int64), counts)
    n_orders = int(cust_idx.size)

    # Day: weighted by weekday within the customer's [first_day, last_day].
    a, b = first_day[cust_idx], last_day[cust_idx]
    day = np.clip(
        np.searchsorted(
            day_cum, day_cum[a] + rng.random(n_orders) * (day_cum[b + 1] - day_cum[a]), side="right"
        )
        - 1,
        a,
        b,
    )

    # Store: favourite / own city / anywhere.
    r = rng.random(n_orders)
    own_city = cust_city[cust_idx]
    in_city = _weighted_choice_in_segments(
        rng.random(n_orders), city_store_start[own_city], city_store_end[own_city], pop_cum
    )
    anywhere = _weighted_choice_in_segments(
        rng.random(n_orders), np.zeros(n_orders, np.int64), np.full(n_orders, n_stores), pop_cum
    )
    store_idx = np.where(r < _P_FAVOURITE, fav_store[cust_idx], np.where(r < _P_OWN_CITY, in_city, anywhere))

    # Time: local time of day in the store's country, stored in UTC, kept on the chosen UTC day.
    days_since_epoch = start_us // _US_PER_DAY + day
    tod_local = _time_of_day_us(rng, n_orders, _ORDER_TOD)
    offset = city_offset[store_city[store_idx]] + _eu_summer_time(days_since_epoch)
    created = days_since_epoch * _US_PER_DAY + _local_to_utc_in_day(tod_local, offset)
    # Never before signup: orders drawn before it on the signup day move to later that same day.
    su = signup_us[cust_idx]
    early = created < su
    if early.any():
        s = su[early]
        day_end = (s // _US_PER_DAY + 1) * _US_PER_DAY
        moved = s + np.floor(rng.random(int(early.sum())) * (day_end - s)).astype(np.int64)
        created[early] = np.clip(moved, s, day_end - 1)

    # Amount and status by category.
    cat = store_cat[store_idx]
    med = np.array([c[3] for c in CATEGORIES])[cat]
    sig = np.array([c[4] for c in CATEGORIES])[cat]
    amount = med * spender[cust_idx] * np.exp(sig * rng.standard_normal(n_orders))
    amount = np.round(np.maximum(amount, 1.0), 2)
    cancelled = rng.random(n_orders) < np.array([c[5] for c in CATEGORIES])[cat]

    # ---- dirty rows -----------------------------------------------------------------------------
    rng = rng_dirty
    n_bad_customers = 0
    bad_customer_ids: list[str] = []
    bad_cust_rows = None
    store_unknown_ids: list[str] = []
    cust_width = max(8, len(str(customers + 20)))
    store_width = max(4, len(str(n_stores + 1000)))
    cust_for_order = cust_idx.copy()
    cust_null = np.zeros(n_orders, dtype=bool)
    n_dirty_orders = 0
    if dirty_fraction > 0:
        n_bad_customers = int(np.clip(round(customers * dirty_fraction), 3, 10))
        shapes = ("-c{:0{w}d}", "c {:0{w}d}", " c{:0{w}d}", "c{:0{w}d} ", "-{:0{w}d}")
        bad_customer_ids = [
            shapes[k % len(shapes)].format(customers + 1 + k, w=cust_width) for k in range(n_bad_customers)
        ]
        bad_city = rng.choice(n_cities, size=n_bad_customers, p=city_w / city_w.sum())
        bad_signup = start_us - rng.integers(1, 365, n_bad_customers) * _US_PER_DAY + rng.integers(
            0, _US_PER_DAY, n_bad_customers
        )
        bad_cust_rows = (bad_signup, bad_city)
        n_dirty_orders = min(n_orders, max(3, int(np.ceil(dirty_fraction * n_orders))))
        dirty = np.sort(rng.choice(n_orders, size=n_dirty_orders, replace=False))
        kind = np.arange(n_dirty_orders) % 3
        rng.shuffle(kind)
        bad_id = dirty[kind == 0]
        cust_for_order[bad_id] = customers + rng.integers(0, n_bad_customers, bad_id.size)
        cust_null[dirty[kind == 1]] = True
        unknown = dirty[kind == 2]
        n_unknown = 5
        store_unknown_ids = [f"s{n_stores + 101 + k * 37:0{store_width}d}" for k in range(n_unknown)]
        store_idx = store_idx.copy()
        store_idx[unknown] = n_stores + rng.integers(0, n_unknown, unknown.size)

    # ---- assemble tables ------------------------------------------------------------------------
    cust_ids_valid = _format_ids("c", np.arange(1, customers + 1), cust_width)
    all_cust_ids = pa.concat_arrays([cust_ids_valid, pa.array(bad_customer_ids, pa.string())])
    if bad_cust_rows is not None:
        cust_signup_all = np.concatenate([signup_us, bad_cust_rows[0]])
        cust_city_all = np.concatenate([cust_city, bad_cust_rows[1]])
    else:
        cust_signup_all, cust_city_all = signup_us, cust_city
    customers_table = pa.table(
        [
            all_cust_ids,
            pa.array(cust_signup_all, type=pa.int64()).cast(TIMESTAMP),
            pa.array(countries[cust_city_all].tolist(), pa.string()),
            pa.array(city_names[cust_city_all].tolist(), pa.string()),
        ],
        schema=CUSTOMERS_SCHEMA,
    )

    store_ids = _format_ids("s", np.arange(1, n_stores + 1), store_width)
    stores_table = pa.table(
        [
            store_ids,
            pa.array(store_names, pa.string()),
            pa.array([CATEGORIES[c][0] for c in store_cat.tolist()], pa.string()),
            pa.array(city_names[store_city].tolist(), pa.string()),
            pa.array(countries[store_city].tolist(), pa.string()),
        ],
        schema=STORES_SCHEMA,
    )
    all_store_ids = pa.concat_arrays([store_ids, pa.array(store_unknown_ids, pa.string())])

    # Orders in created_at order (ties broken by generation order), ids follow that order.
    order = np.argsort(created, kind="stable")
    created = created[order]
    take_cust = pa.array(cust_for_order[order], type=pa.int64(), mask=cust_null[order])
    status_dict = pa.array(["delivered", "cancelled"], pa.string())
    orders_table = pa.table(
        [
            _format_ids("o", np.arange(1, n_orders + 1), max(10, len(str(n_orders)))),
            all_cust_ids.take(take_cust),
            all_store_ids.take(pa.array(store_idx[order], type=pa.int64())),
            pa.array(created, type=pa.int64()).cast(TIMESTAMP),
            pa.array(amount[order], type=pa.float64()),
            status_dict.take(pa.array(cancelled[order].astype(np.int64))),
        ],
        schema=ORDERS_SCHEMA,
    )
    # Row ranges of each UTC day (created is sorted).
    bounds = np.searchsorted(created, start_us + np.arange(days + 1) * _US_PER_DAY, side="left")
    assert created.size == 0 or (created[0] >= start_us and created[-1] < end_us)

    return {
        "customers": customers_table,
        "stores": stores_table,
        "orders": orders_table,
        "bounds": bounds,
        "start": start,
        "cancelled": int(cancelled.sum()),
        "invalid": n_bad_customers + n_dirty_orders,
    }


def _write(fs: pafs.FileSystem, path: str, table: pa.Table) -> None:
    pq.write_table(table, path, filesystem=fs, compression=PARQUET_COMPRESSION)


def generate_lake(
    out_uri: str,
    *,
    customers: int,
    days: int,
    seed: int,
    end: date,
    dirty_fraction: float = 0.0005,
) -> LakeSummary:
    """Write a deterministic synthetic raw lake (SPEC 3) under `<out_uri>/raw/`, replacing what was there.

    Orders cover the UTC days `end - days + 1` .. `end` inclusive. See the module docstring for the
    shape of the data and the meaning of the summary's counts.
    """
    t0 = time.perf_counter()
    if isinstance(end, str):
        end = date.fromisoformat(end)
    if isinstance(end, datetime):  # a datetime is a date too; keep only its (UTC) calendar date
        end = (end.astimezone(timezone.utc) if end.tzinfo else end).date()
    if not isinstance(end, date):
        raise ValueError(f"end must be a date (YYYY-MM-DD), got {end!r}")
    if not isinstance(customers, int) or isinstance(customers, bool) or customers < 1:
        raise ValueError(f"customers must be a positive integer, got {customers!r}")
    if not isinstance(days, int) or isinstance(days, bool) or days < 1:
        raise ValueError(f"days must be a positive integer, got {days!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not (0.0 <= float(dirty_fraction) <= 0.5):
        raise ValueError(f"dirty_fraction must be in [0, 0.5], got {dirty_fraction!r}")

    built = _build(customers, days, seed, end, float(dirty_fraction))

    fs, root = _resolve(out_uri)
    raw = posixpath.join(root, "raw") if root else "raw"
    # Everything is computed before the old raw data is removed, to keep that window short.
    if fs.get_file_info(raw).type != pafs.FileType.NotFound:
        fs.delete_dir(raw)
    # Object stores need no directories (and S3 would get empty marker objects); others do.
    make_dirs = not isinstance(fs, pafs.S3FileSystem)
    if make_dirs:
        for table in ("customers", "stores", "orders"):
            fs.create_dir(posixpath.join(raw, table), recursive=True)

    orders: pa.Table = built["orders"]
    bounds: np.ndarray = built["bounds"]
    start: date = built["start"]
    jobs: list[tuple[str, pa.Table]] = [
        (posixpath.join(raw, "customers", PART_FILE), built["customers"]),
        (posixpath.join(raw, "stores", PART_FILE), built["stores"]),
    ]
    for i in range(days):
        d = start + timedelta(days=i)
        part_dir = posixpath.join(raw, "orders", f"order_date={d.isoformat()}")
        lo, hi = int(bounds[i]), int(bounds[i + 1])
        jobs.append((posixpath.join(part_dir, PART_FILE), orders.slice(lo, hi - lo)))
    if make_dirs:
        for path, _ in jobs[2:]:
            fs.create_dir(posixpath.dirname(path), recursive=True)
    with ThreadPoolExecutor(max_workers=min(8, max(2, os.cpu_count() or 2))) as pool:
        for fut in [pool.submit(_write, fs, path, table) for path, table in jobs]:
            fut.result()

    return LakeSummary(
        customers=built["customers"].num_rows,
        stores=built["stores"].num_rows,
        orders=orders.num_rows,
        cancelled_orders=built["cancelled"],
        invalid_rows=built["invalid"],
        days=days,
        start=start,
        end=end,
        seconds=round(time.perf_counter() - t0, 3),
    )
