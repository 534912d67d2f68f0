"""What a calculation puts in its materialization's metadata: per-segment figures, bounded."""

from __future__ import annotations

import json
import random

import dagster as dg

from resources.lake.manifest import CalculationManifest, ManifestSegment
from segmentation_assets.calculation import PER_SEGMENT_METADATA_LIMIT, _metadata
from segmentation_assets.core.segment_job import SegmentConfig, SegmentJobResult


def _result(changes: list[tuple[int, int]]) -> tuple[dict[str, SegmentJobResult], list[SegmentConfig]]:
    segments = [
        ManifestSegment(segment_id=f"s{i:06d}", version=i % 3 + 1, member_count=100 + entered, entered=entered, exited=exited)
        for i, (entered, exited) in enumerate(changes)
    ]
    manifest = CalculationManifest(
        segment_type="frequent_buyers", partition_key="2026-11-25", as_of="2026-11-26T00:00:00+00:00",
        run_id="r", calculated_at="2026-11-26T00:10:00+00:00", segments=segments,
    )
    configs = [SegmentConfig(s.segment_id, s.version, {}) for s in segments]
    return {"2026-11-25": SegmentJobResult("file:///lake/results", manifest)}, configs


def _json(value: object) -> object:
    assert isinstance(value, dg.JsonMetadataValue)
    return value.data


def test_every_segment_is_listed_up_to_the_limit() -> None:
    results, configs = _result([(1, 0), (0, 2), (5, 5)])
    metadata = _metadata(results, configs)
    assert _json(metadata["per_segment"]) == {
        "s000000": {"member_count": 101, "entered": 1, "exited": 0},
        "s000001": {"member_count": 100, "entered": 0, "exited": 2},
        "s000002": {"member_count": 105, "entered": 5, "exited": 5},
    }
    assert _json(metadata["config_versions"]) == {"s000000": 1, "s000001": 2, "s000002": 3}
    assert metadata["per_segment_lists"] == "every segment"
    assert metadata["segments"] == 3


def test_beyond_the_limit_the_segments_that_changed_most_are_listed() -> None:
    rng = random.Random(7)
    changes = [(rng.randint(0, 50), rng.randint(0, 50)) for _ in range(PER_SEGMENT_METADATA_LIMIT * 5)]
    results, configs = _result(changes)
    metadata = _metadata(results, configs)

    per_segment = _json(metadata["per_segment"])
    assert isinstance(per_segment, dict) and len(per_segment) == PER_SEGMENT_METADATA_LIMIT
    by_change = sorted(range(len(changes)), key=lambda i: (-(changes[i][0] + changes[i][1]), i))
    assert set(per_segment) == {f"s{i:06d}" for i in by_change[:PER_SEGMENT_METADATA_LIMIT]}
    assert set(_json(metadata["config_versions"])) == set(per_segment)  # type: ignore[arg-type]
    assert metadata["segments"] == len(changes)  # the totals still count every segment
    assert metadata["entered"] == sum(e for e, _ in changes)
    assert str(len(changes)) in str(metadata["per_segment_lists"]).replace(",", "")
    assert len(json.dumps(per_segment)) < 100_000
