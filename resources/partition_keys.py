"""Partition keys without Dagster: their shape, their windows, and which ones have closed.

Dagster's partitions definition (segmentation_assets/partitions.py) is the authority where Dagster
runs; the API, which does not load Dagster, asks this module the same questions: a daily key is
`YYYY-MM-DD`, an hourly one `YYYY-MM-DD-HH:00`, windows are UTC, and the partitions that exist are
those from `partitions_start_date` up to the latest whose window has ended.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Literal

Granularity = Literal["daily", "hourly"]

_FORMATS = {"daily": "%Y-%m-%d", "hourly": "%Y-%m-%d-%H:%M"}
_SHAPES = {"daily": "YYYY-MM-DD", "hourly": "YYYY-MM-DD-HH:00"}
_PERIODS = {"daily": timedelta(days=1), "hourly": timedelta(hours=1)}


class InvalidPartition(ValueError):
    pass


def _start(granularity: Granularity, start_date: str) -> datetime:
    return datetime.strptime(start_date, "%Y-%m-%d").replace(tzinfo=timezone.utc)


def partition_key(granularity: Granularity, window_start: datetime) -> str:
    return window_start.astimezone(timezone.utc).strftime(_FORMATS[granularity])


def partition_window(granularity: Granularity, key: str) -> tuple[datetime, datetime]:
    """[start, end) of the key's window; InvalidPartition when the key is not of the granularity's shape."""
    try:
        start = datetime.strptime(key, _FORMATS[granularity]).replace(tzinfo=timezone.utc)
    except ValueError:
        start = None
    # strptime takes `2026-11-25-13:30` and `2026-1-5`: a key must be exactly the one its window starts with.
    if start is None or partition_key(granularity, start) != key or start.minute:
        raise InvalidPartition(f"not a {granularity} partition key: expected {_SHAPES[granularity]} (UTC)")
    return start, start + _PERIODS[granularity]


def latest_closed_partition(granularity: Granularity, start_date: str, now: datetime) -> str | None:
    """The latest partition whose window has ended by `now`; None before the first one has."""
    period = _PERIODS[granularity]
    now = now.astimezone(timezone.utc)
    current = now.replace(minute=0, second=0, microsecond=0)
    if granularity == "daily":
        current = current.replace(hour=0)
    latest = current - period
    if latest < _start(granularity, start_date):
        return None
    return partition_key(granularity, latest)


def checked_partition(granularity: Granularity, start_date: str, key: str, now: datetime) -> str:
    """The key, if it names a partition that exists and has closed; else InvalidPartition saying why."""
    start, _ = partition_window(granularity, key)
    first = partition_key(granularity, _start(granularity, start_date))
    latest = latest_closed_partition(granularity, start_date, now)
    if latest is None:
        raise InvalidPartition(f"no partition has closed yet (the first is {first})")
    if start < _start(granularity, start_date) or key > latest:
        raise InvalidPartition(f"{key} is not a closed partition: valid ones run from {first} to {latest}")
    return key
