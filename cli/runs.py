"""Materializing one partition of segment types through Dagster, for `segmentation run`."""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg

from resources.dagster_instance import dagster_instance
from resources.settings import Settings
from segmentation_assets.calculation import members_key
from segmentation_assets.publish import alias_key, index_key
from segmentation_assets.segment_types import SEGMENT_TYPES


@dataclass
class RunOutcome:
    success: bool
    summary_lines: list[str] = field(default_factory=list)


def materialize_partition(settings: Settings, partition_key: str, segment_types: list[str]) -> RunOutcome:
    from definitions import build_definitions

    unknown = sorted(set(segment_types) - set(SEGMENT_TYPES))
    if unknown:
        return RunOutcome(False, [f"error: unknown segment type(s) {', '.join(unknown)}; known: {', '.join(SEGMENT_TYPES)}"])
    selected = segment_types or list(SEGMENT_TYPES)
    defs = build_definitions(settings)
    job = defs.resolve_implicit_global_asset_job_def()
    keys = [key for t in selected for key in (members_key(t), index_key(t), alias_key(t))]
    result = job.execute_in_process(
        partition_key=partition_key,
        instance=dagster_instance(settings),
        asset_selection=keys,
        raise_on_error=False,
    )
    lines = [f"run {result.run_id}: {'succeeded' if result.success else 'FAILED'}"]
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.event_specific_data.materialization
            interesting = {k: v.value for k, v in materialization.metadata.items() if k in ("index", "memberships", "segments", "generation")}
            lines.append(f"  materialized {materialization.asset_key.to_user_string()} {interesting}")
        elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION and not event.event_specific_data.passed:
            lines.append(f"  check FAILED {event.event_specific_data.asset_check_key.to_user_string()}")
        elif event.is_failure:
            lines.append(f"  step FAILED {event.step_key}: {event.message}")
    return RunOutcome(result.success, lines)
