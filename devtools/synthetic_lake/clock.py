"""Time as integer microseconds since the Unix epoch (UTC), the unit of the lake's timestamps, and the
local times of day at which people sign up and order."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np

US_PER_SECOND = 1_000_000
US_PER_HOUR = 3600 * US_PER_SECOND
US_PER_DAY = 24 * US_PER_HOUR
EPOCH = date(1970, 1, 1)

# A mixture of local time-of-day peaks: (mean hour, sd in hours, weight) each; the weight left over
# is spread uniformly over the day.
TimeOfDayMixture = tuple[tuple[float, float, float], ...]


def day_start_us(day: date) -> int:
    """Microseconds since the epoch at 00:00 UTC of `day`."""
    return (day - EPOCH).days * US_PER_DAY


def _last_sunday(year: int, month: int) -> date:
    next_month = date(year + (month == 12), month % 12 + 1, 1)
    last = next_month - timedelta(days=1)
    return last - timedelta(days=(last.weekday() + 1) % 7)


def eu_summer_time(days_since_epoch: np.ndarray) -> np.ndarray:
    """1 where the UTC day is in EU summer time (last Sunday of March .. last Sunday of October), else 0."""
    if days_since_epoch.size == 0:
        return np.zeros(0, dtype=np.int64)
    first, last = int(days_since_epoch.min()), int(days_since_epoch.max())
    years = range((EPOCH + timedelta(days=first)).year, (EPOCH + timedelta(days=last)).year + 1)
    summer = np.zeros(days_since_epoch.shape, dtype=np.int64)
    for year in years:  # one iteration per calendar year, not per row
        begins = (_last_sunday(year, 3) - EPOCH).days
        ends = (_last_sunday(year, 10) - EPOCH).days
        summer[(days_since_epoch >= begins) & (days_since_epoch < ends)] = 1
    return summer


def local_time_of_day_us(rng: np.random.Generator, n: int, mixture: TimeOfDayMixture) -> np.ndarray:
    """`n` local times of day in microseconds, drawn from `mixture`'s peaks plus its uniform floor."""
    weights = np.array([w for _, _, w in mixture] + [1.0 - sum(w for _, _, w in mixture)])
    means = np.array([m for m, _, _ in mixture] + [12.0])
    sds = np.array([s for _, s, _ in mixture] + [0.0])
    component = np.searchsorted(np.cumsum(weights)[:-1], rng.random(n), side="right")
    hours = means[component] + sds[component] * rng.standard_normal(n)
    uniform = component == len(mixture)
    hours[uniform] = rng.random(int(uniform.sum())) * 24.0
    us = np.floor(np.mod(hours, 24.0) * US_PER_HOUR).astype(np.int64)
    return np.clip(us, 0, US_PER_DAY - 1)


def local_to_utc_in_day(local_time_of_day_us: np.ndarray, utc_offset_hours: np.ndarray) -> np.ndarray:
    """Shift a local time of day to UTC, wrapping inside the same UTC day, so that the UTC date (the
    orders' partition) chosen beforehand stays the row's date."""
    return np.mod(local_time_of_day_us - utc_offset_hours.astype(np.int64) * US_PER_HOUR, US_PER_DAY)
