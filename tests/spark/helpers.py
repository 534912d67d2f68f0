"""Running one segment job in-process and reading its members back, for Spark tests."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds

from resources.lake.storage import Lake
from segmentation_assets.core.spark_session import local_spark_session
from segmentation_assets.core.segment_job import SegmentConfig, SegmentJobRequest, SegmentJobResult, run_segment_job


def run_job(
    lake_root: Path, segment_type: str, partition_key: str, as_of: datetime, params_by_id: dict[str, dict[str, Any]],
    previous_partition: str | None = None,
) -> tuple[SegmentJobResult, dict[str, set[str]]]:
    lake = Lake(str(lake_root))
    request = SegmentJobRequest(
        segment_type=segment_type,
        partition_key=partition_key,
        as_of=as_of.isoformat(),
        lake_uri=str(lake_root),
        run_id="test-run",
        configs=[SegmentConfig(segment_id=i, version=1, params=p) for i, p in params_by_id.items()],
        earlier_results={lake.results_dir(segment_type, previous_partition): list(params_by_id)} if previous_partition else {},
    )
    result = run_segment_job(local_spark_session(shuffle_partitions=4), request)
    rows = ds.dataset(result.results_uri, format="parquet").to_table().to_pylist()
    members: dict[str, set[str]] = defaultdict(set)
    pairs = [(r["segment_id"], r["customer_id"]) for r in rows]
    assert len(pairs) == len(set(pairs)), "a membership is written twice"
    for segment_id, customer_id in pairs:
        members[segment_id].add(customer_id)
    return result, {i: members.get(i, set()) for i in params_by_id}
