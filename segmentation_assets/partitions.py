"""Time partitions of every segment type: daily by default, hourly by setting."""

from __future__ import annotations

import dagster as dg


def segment_partitions(granularity: str, start_date: str) -> dg.TimeWindowPartitionsDefinition:
    if granularity == "hourly":
        return dg.HourlyPartitionsDefinition(start_date=f"{start_date}-00:00", timezone="UTC")
    return dg.DailyPartitionsDefinition(start_date=start_date, timezone="UTC")
