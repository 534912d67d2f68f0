"""Writes a calculation's results folder by hand, in the layout `segment_job.run_segment_job` writes:
Parquet (`segment_id`, `customer_id`), one segment per file, sorted, then `_manifest.json` last.
Lets ingestion tests publish calculations without running Spark."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from resources.lake.storage import MANIFEST_NAME, Lake

SCHEMA = pa.schema([("segment_id", pa.string()), ("customer_id", pa.string())])


def write_results(
    lake_uri: str,
    segment_type: str,
    partition_key: str,
    segments: dict[str, list[str]],
    attributes: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Writes the folder and answers its manifest; zero-member segments get no file, as from Spark."""
    lake = Lake(lake_uri)
    folder = Path(lake.results_dir(segment_type, partition_key))
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    for number, (segment_id, members) in enumerate(sorted(segments.items())):
        if members:
            rows = {"segment_id": [segment_id] * len(members), "customer_id": sorted(members)}
            pq.write_table(pa.table(rows, schema=SCHEMA), folder / f"part-{number:05d}.parquet")
    manifest = {
        "segment_type": segment_type,
        "partition_key": partition_key,
        "as_of": f"{partition_key}T00:00:00+00:00",
        "run_id": "hand-made",
        "calculated_at": datetime.now(timezone.utc).isoformat(),
        "segments": [
            {
                "segment_id": segment_id,
                "version": 1,
                "member_count": len(members),
                "attributes": {"name": f"segment {segment_id}", "labels": {}, **(attributes or {}).get(segment_id, {})},
            }
            for segment_id, members in sorted(segments.items())
        ],
        "rows_read": {},
        "rejected_rows": {},
        "seconds": 0.0,
    }
    lake.write_json(f"{lake.results_dir(segment_type, partition_key)}/{MANIFEST_NAME}", manifest)
    return manifest
