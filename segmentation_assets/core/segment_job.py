"""One Spark job: every active segment of one type, for one partition, in one pass.

The request is plain data so that the same function runs in-process (local mode) and inside
the script that EMR runs.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, get_args

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from resources.lake.manifest import (
    CalculationManifest,
    ManifestSegment,
    write_manifest,
)
from resources.lake.storage import Lake
from resources.targeting import SegmentAttributes
from segmentation_assets.core.raw_data import QualityReport, RawData
from segmentation_assets.core.segment_types import SEGMENT_TYPES, SegmentType


@dataclass(frozen=True)
class SegmentConfig:
    segment_id: str
    version: int
    params: dict[str, Any]
    # What readers see of the segment: name, labels and targeting attributes, as of this run.
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SegmentJobRequest:
    segment_type: str
    partition_key: str
    as_of: str  # ISO timestamp of T
    lake_uri: str
    run_id: str
    configs: list[SegmentConfig] = field(default_factory=list)
    # Who entered and exited each segment is counted against its latest earlier calculation:
    # results folder -> the segments compared with it. A segment in `first_calculations` has
    # none (every member entered); one in neither has one whose results are gone (unknown: null).
    earlier_results: dict[str, list[str]] = field(default_factory=dict)
    first_calculations: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SegmentJobRequest:
        return cls(**{**data, "configs": [SegmentConfig(**c) for c in data["configs"]]})


@dataclass(frozen=True)
class SegmentJobResult:
    """What a job computed, in-process or elsewhere (EMR): its results folder and manifest."""

    results_uri: str
    manifest: CalculationManifest

    @property
    def segments(self) -> list[ManifestSegment]:
        return self.manifest.segments

    @property
    def quality(self) -> QualityReport:
        return QualityReport(self.manifest.rows_read, self.manifest.rejected_rows)

    @property
    def seconds(self) -> float:
        return self.manifest.seconds

    @property
    def member_counts(self) -> dict[str, int]:
        return self.manifest.member_counts

    @property
    def total_members(self) -> int:
        return self.manifest.total_members


_SPARK_TYPES = {int: T.LongType(), float: T.DoubleType(), str: T.StringType(), bool: T.BooleanType()}


def _spark_type(annotation: Any) -> T.DataType:
    """The Spark type of a parameter annotated `int`, `float` or `str`, maybe Optional or Annotated."""
    if annotation in _SPARK_TYPES:
        return _SPARK_TYPES[annotation]
    for inner in get_args(annotation):  # Optional[X] -> (X, None); Annotated[X, ...] -> (X, ...)
        if inner is not type(None):
            return _spark_type(inner)
    raise TypeError(f"no Spark type for parameter annotation {annotation!r}")


def configs_frame(spark: SparkSession, segment_type: SegmentType, configs: list[SegmentConfig]) -> DataFrame:
    """One row per segment: its id and every parameter, defaults filled in."""
    fields = segment_type.params_model.model_fields
    schema = T.StructType(
        [T.StructField("segment_id", T.StringType(), False)]
        + [T.StructField(name, _spark_type(info.annotation), True) for name, info in fields.items()]
    )
    rows = []
    for config in configs:
        params = segment_type.parse_params(config.params).model_dump()
        rows.append((config.segment_id, *(params[name] for name in fields)))
    return spark.createDataFrame(rows, schema)


def _member_counts_and_changes(
    spark: SparkSession, current_uri: str, earlier_results: dict[str, list[str]]
) -> tuple[dict[str, int], dict[str, tuple[int, int]]]:
    """(segment_id -> members, segment_id -> (members that entered, members that exited) since its
    earlier results), in one read of the results: with earlier results, one full outer join of
    them with today's, whose rows say for each membership whether it is new, gone or kept. (A count
    and two anti-joins read today's results three times: 116 s against 40-48 s for 37M memberships
    a day at 100K segments, measured on bench/bench_segments.py's lake.)"""
    keys = ["segment_id", "customer_id"]
    current = spark.read.parquet(Lake.for_spark(current_uri))
    earlier = None
    for uri, segment_ids in earlier_results.items():
        compared = F.broadcast(spark.createDataFrame([(i,) for i in segment_ids], "segment_id string"))
        part = spark.read.parquet(Lake.for_spark(uri)).join(compared, "segment_id")
        earlier = part if earlier is None else earlier.unionByName(part)
    if earlier is None:
        return {r["segment_id"]: r["count"] for r in current.groupBy("segment_id").count().collect()}, {}
    now, before = F.col("now"), F.col("before")
    # A row per membership, today's or the earlier one's or both: each results folder holds a
    # (segment, customer) once, and a segment is compared with one earlier folder only.
    rows = (
        current.withColumn("now", F.lit(True))
        .join(earlier.withColumn("before", F.lit(True)), keys, "full_outer")
        .groupBy("segment_id")
        .agg(
            F.count(now).alias("members"),
            F.count(F.when(before.isNull(), True)).alias("entered"),
            F.count(F.when(now.isNull(), True)).alias("exited"),
        )
        .collect()
    )
    compared_ids = {i for ids in earlier_results.values() for i in ids}
    counts = {r["segment_id"]: r["members"] for r in rows if r["members"]}
    changes = {r["segment_id"]: (r["entered"], r["exited"]) for r in rows if r["segment_id"] in compared_ids}
    # A compared segment that had nobody then and has nobody now has no row: nothing changed.
    return counts, {i: changes.get(i, (0, 0)) for i in compared_ids}


def segment_members(spark: SparkSession, segment_type: SegmentType, raw: RawData, configs: list[SegmentConfig]) -> DataFrame:
    """(segment_id, customer_id) of every config, as of the raw data's T, in one pass: what a
    calculation writes to the lake, and what a preview counts (core/preview_job.py)."""
    if not configs:
        return spark.createDataFrame([], "segment_id string, customer_id string")
    return segment_type.members(raw, configs_frame(spark, segment_type, configs))


def run_segment_job(spark: SparkSession, request: SegmentJobRequest) -> SegmentJobResult:
    started = time.monotonic()
    segment_type = SEGMENT_TYPES[request.segment_type]
    lake = Lake(request.lake_uri)
    as_of = datetime.fromisoformat(request.as_of).astimezone(timezone.utc)
    raw = RawData(spark, lake, as_of)
    results_uri = lake.results_dir(request.segment_type, request.partition_key)

    members = segment_members(spark, segment_type, raw, request.configs)
    # Members are unique by construction (ids are deduplicated in RawData, facts are grouped per
    # customer), so no dropDuplicates shuffle here; the tests check it.
    # Each segment in one file, so ingestion reads it segment by segment. Not sorted here: the
    # index step sorts each file with Arrow, measured cheaper than Spark's sort of every membership.
    shuffle_partitions = int(spark.conf.get("spark.sql.shuffle.partitions"))
    output_partitions = max(1, min(len(request.configs), shuffle_partitions))
    (
        members.repartition(output_partitions, "segment_id")
        .write.mode("overwrite")
        .parquet(Lake.for_spark(results_uri))
    )

    written, changes = _member_counts_and_changes(spark, results_uri, request.earlier_results)
    member_counts = {c.segment_id: 0 for c in request.configs}
    member_counts.update(written)
    changes.update({i: (member_counts[i], 0) for i in request.first_calculations})
    quality = raw.quality_report()
    seconds = round(time.monotonic() - started, 3)

    segments = []
    for config in sorted(request.configs, key=lambda c: c.segment_id):
        entered, exited = changes.get(config.segment_id, (None, None))
        segments.append(
            ManifestSegment(
                segment_id=config.segment_id,
                version=config.version,
                member_count=member_counts[config.segment_id],
                attributes=SegmentAttributes.model_validate(config.attributes),
                entered=entered,
                exited=exited,
            )
        )
    manifest = CalculationManifest(
        segment_type=request.segment_type,
        partition_key=request.partition_key,
        as_of=as_of.isoformat(),
        run_id=request.run_id,
        calculated_at=datetime.now(timezone.utc).isoformat(),
        segments=segments,
        rows_read=quality.rows_read,
        rejected_rows=quality.rejected,
        seconds=seconds,
    )
    # The manifest is written last: its presence says the results folder is complete.
    write_manifest(lake, results_uri, manifest)
    return SegmentJobResult(results_uri, manifest)
