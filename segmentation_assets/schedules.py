"""A refresh job and schedule per segment type: each window is computed once it has closed."""

import dagster as dg


def refresh_job(segment_type: str, partitions_def: dg.PartitionsDefinition):  # an unresolved asset job
    return dg.define_asset_job(
        f"refresh_{segment_type}",
        selection=dg.AssetSelection.groups(segment_type),
        partitions_def=partitions_def,
        description=f"Calculation, index and alias of {segment_type} for one partition.",
    )


def refresh_schedule(
    job, *, hour_of_day: int, minute_of_hour: int, granularity: str
) -> dg.ScheduleDefinition:
    """Targets the last complete partition; for hourly partitions only the minute applies."""
    return dg.build_schedule_from_partitioned_job(
        job,
        hour_of_day=hour_of_day if granularity == "daily" else None,
        minute_of_hour=minute_of_hour,
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
