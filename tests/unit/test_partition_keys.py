"""The API's partition keys (resources/partition_keys.py) agree with Dagster's partitions definitions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest

from resources.partition_keys import InvalidPartition, checked_partition, latest_closed_partition, partition_window
from segmentation_assets.partitions import segment_partitions

START = "2026-01-01"


def _dagster_latest(granularity: str, now: datetime) -> str | None:
    with dg.partition_loading_context(effective_dt=now):
        return segment_partitions(granularity, START).get_last_partition_key()


@pytest.mark.parametrize("granularity", ["daily", "hourly"])
@pytest.mark.parametrize(
    "now",
    [
        datetime(2026, 11, 26, 0, 0, tzinfo=timezone.utc),
        datetime(2026, 11, 26, 0, 0, 1, tzinfo=timezone.utc),
        datetime(2026, 11, 26, 13, 59, 59, tzinfo=timezone.utc),
        datetime(2026, 1, 1, 0, 30, tzinfo=timezone.utc),
        datetime(2026, 1, 2, 0, 0, tzinfo=timezone.utc),
        datetime(2025, 12, 31, 23, 0, tzinfo=timezone.utc),
    ],
)
def test_the_latest_closed_partition_is_dagsters_last_one(granularity: str, now: datetime) -> None:
    assert latest_closed_partition(granularity, START, now) == _dagster_latest(granularity, now)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("granularity", "key"),
    [("daily", "2026-11-25"), ("hourly", "2026-11-25-13:00"), ("hourly", "2026-11-25-00:00")],
)
def test_windows_are_dagsters(granularity: str, key: str) -> None:
    window = segment_partitions(granularity, START).time_window_for_partition_key(key)
    assert partition_window(granularity, key) == (window.start, window.end)  # type: ignore[arg-type]


NOW = datetime(2026, 11, 26, 10, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("granularity", "key", "valid"),
    [
        ("daily", "2026-11-25", True),
        ("daily", "2026-01-01", True),
        ("daily", "2025-12-31", False),  # before the start
        ("daily", "2026-11-26", False),  # not closed
        ("daily", "2026-11-25-13:00", False),
        ("daily", "2026-2-3", False),
        ("daily", "2026-02-30", False),
        ("daily", " 2026-11-25", False),
        ("hourly", "2026-11-26-09:00", True),
        ("hourly", "2026-11-26-10:00", False),  # not closed
        ("hourly", "2026-11-25-13:30", False),
        ("hourly", "2026-11-25", False),
    ],
)
def test_only_closed_partitions_of_the_granularity_are_taken(granularity: str, key: str, valid: bool) -> None:
    if valid:
        assert checked_partition(granularity, START, key, NOW) == key  # type: ignore[arg-type]
    else:
        with pytest.raises(InvalidPartition):
            checked_partition(granularity, START, key, NOW)  # type: ignore[arg-type]


def test_no_partition_before_the_first_window_closes() -> None:
    before = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    assert latest_closed_partition("daily", START, before) is None
    with pytest.raises(InvalidPartition, match="no partition has closed yet"):
        checked_partition("daily", START, "2026-01-01", before)
    assert latest_closed_partition("daily", START, before + timedelta(hours=12)) == "2026-01-01"
