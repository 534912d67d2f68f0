"""Materializing one partition of segment types through Dagster, for `segmentation run`."""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg

from segmentation_assets.instance import dagster_instance
from resources.settings import Settings
from segmentation_assets.calculation import members_key
from segmentation_assets.index_and_alias import alias_key, index_key
from segmentation_assets.core.segment_types import SEGMENT_TYPES


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
    unknown_partition = unknown_partition_error(defs, partition_key, selected)
    if unknown_partition:
        return RunOutcome(False, [unknown_partition])
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


def unknown_partition_error(defs: dg.Definitions, partition_key: str, segment_types: list[str]) -> str | None:
    """The error line for a partition key that some selected asset does not have, else None.

    Asked of the assets' own partitions definitions, as `execute_in_process` would (it raises
    DagsterUnknownPartitionError instead): malformed keys, and dates before the start or after now."""
    for segment_type in segment_types:
        for key in (members_key(segment_type), index_key(segment_type), alias_key(segment_type)):
            partitions_def = defs.resolve_assets_def(key).partitions_def
            if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition) and not _is_partition(partitions_def, partition_key):
                return f"error: unknown partition key {partition_key!r} for {segment_type}; {_valid_keys(partitions_def)}"
    return None


def _is_partition(partitions_def: dg.TimeWindowPartitionsDefinition, partition_key: str) -> bool:
    """`has_partition_key` alone takes `2026-11-25-13:30` on hourly partitions, and its window is
    then 14:00-15:00: a key must also be the one its own window starts with."""
    if not partitions_def.has_partition_key(partition_key):
        return False
    window = partitions_def.time_window_for_partition_key(partition_key)
    return partitions_def.get_partition_key_for_timestamp(window.start.timestamp()) == partition_key


def _valid_keys(partitions_def: dg.TimeWindowPartitionsDefinition) -> str:
    shape = f"a valid key is {_key_shape(partitions_def.fmt)} ({partitions_def.timezone})"
    first, last = partitions_def.get_first_partition_key(), partitions_def.get_last_partition_key()
    if first is None or last is None:
        return f"{shape}, and there is none yet"
    return f"{shape}, from {first} to {last} (e.g. --partition {last})"


def _key_shape(fmt: str) -> str:
    """`%Y-%m-%d` -> `YYYY-MM-DD`; hourly `%Y-%m-%d-%H:%M` -> `YYYY-MM-DD-HH:00`."""
    for directive, placeholder in (("%Y", "YYYY"), ("%m", "MM"), ("%d", "DD"), ("%H", "HH"), ("%M", "00")):
        fmt = fmt.replace(directive, placeholder)
    return fmt
