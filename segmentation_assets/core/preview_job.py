"""Previews: the members that segments of one type would have for one partition, counted, not written.

The same computation as a calculation (`segment_job.segment_members` over `RawData` as of the end
of the partition's window), with each preview standing in for a segment: previews of one type and
partition share one Spark pass, as a type's segments do. Nothing goes to the lake: each preview
gets its exact member count and a deterministic sample, its `SAMPLE_SIZE` smallest customer ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import ValidationError
from pyspark.sql import SparkSession, Window
from pyspark.sql import functions as F

from resources.lake.storage import Lake
from segmentation_assets.core.raw_data import RawData
from segmentation_assets.core.segment_job import SegmentConfig, segment_members
from segmentation_assets.core.segment_types import SEGMENT_TYPES

SAMPLE_SIZE = 20
RAW_TABLES = ("customers", "stores", "orders")
_ORDER_DATE = "order_date="


@dataclass(frozen=True)
class PreviewJobRequest:
    segment_type: str
    partition_key: str
    window_start: datetime
    as_of: datetime  # T: the end of the partition's window
    lake_uri: str
    params: dict[str, dict[str, Any]]  # preview id -> params


@dataclass(frozen=True)
class PreviewOutcome:
    member_count: int | None = None
    sample_customer_ids: list[str] | None = None
    error: str | None = None  # why it could not be computed; then no count


class MissingRawData(Exception):
    """The lake lacks what the partition needs: a preview of it would count nothing, silently."""


def missing_raw_data(lake: Lake, partition_key: str, window_start: datetime, as_of: datetime) -> str | None:
    """Why the lake cannot answer for the partition (a raw table missing, or no orders folder for a
    day of its window), or None. A day without any order has no folder either: for a preview that
    is worth saying rather than answering from the days before."""
    for table in RAW_TABLES:
        if not lake.exists(lake.raw_table(table)):
            return f"the lake has no raw {table} table ({lake.raw_table(table)})"
    days = sorted(f.removeprefix(_ORDER_DATE) for f in lake.child_folders(lake.raw_table("orders")) if f.startswith(_ORDER_DATE))
    if not days:
        return f"the lake holds no raw orders ({lake.raw_table('orders')} has no order_date= folder)"
    day, last = window_start.astimezone(timezone.utc).date(), (as_of - timedelta(microseconds=1)).astimezone(timezone.utc).date()
    while day <= last:
        if day.isoformat() not in days:
            return (
                f"the lake holds no raw orders for {day.isoformat()}, in partition {partition_key}'s window: "
                f"its orders run from {days[0]} to {days[-1]}"
            )
        day += timedelta(days=1)
    return None


def invalid_params(segment_type: str, params: dict[str, Any]) -> str | None:
    """Why the type's model refuses the params now (the API checked them, but a type can change)."""
    try:
        SEGMENT_TYPES[segment_type].parse_params(params)
    except ValidationError as error:
        return "; ".join(f"params.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
    return None


def run_preview_job(spark: SparkSession, request: PreviewJobRequest) -> dict[str, PreviewOutcome]:
    """Preview id -> its outcome. Raises MissingRawData (every preview of the request fails with
    it), and whatever Spark raises."""
    lake = Lake(request.lake_uri)
    if (problem := missing_raw_data(lake, request.partition_key, request.window_start, request.as_of)) is not None:
        raise MissingRawData(problem)
    outcomes: dict[str, PreviewOutcome] = {}
    configs = []
    for preview_id, params in request.params.items():
        if (problem := invalid_params(request.segment_type, params)) is not None:
            outcomes[preview_id] = PreviewOutcome(error=f"the params are not valid for {request.segment_type}: {problem}")
        else:
            configs.append(SegmentConfig(segment_id=preview_id, version=0, params=params))
    if not configs:
        return outcomes

    raw = RawData(spark, lake, request.as_of)
    # Two questions of one set of members: computed once.
    members = segment_members(spark, SEGMENT_TYPES[request.segment_type], raw, configs).persist()
    try:
        counts = {row["segment_id"]: row["count"] for row in members.groupBy("segment_id").count().collect()}
        # `row_number() <= n` is computed as a top-n per segment before any shuffle (Spark's group limit).
        first = Window.partitionBy("segment_id").orderBy("customer_id")
        sampled = members.withColumn("rank", F.row_number().over(first)).where(F.col("rank") <= SAMPLE_SIZE)
        samples: dict[str, list[str]] = {c.segment_id: [] for c in configs}
        for row in sampled.select("segment_id", "customer_id").collect():
            samples[row["segment_id"]].append(row["customer_id"])
    finally:
        members.unpersist()
    for config in configs:
        outcomes[config.segment_id] = PreviewOutcome(
            member_count=counts.get(config.segment_id, 0), sample_customer_ids=sorted(samples[config.segment_id])
        )
    return outcomes
