"""Everything Dagster shows: per segment type, its calculation, index and alias assets."""

from __future__ import annotations

import warnings

import dagster as dg

from segmentation_assets.dagster_resources import (
    ConfigStoreResource,
    ElasticsearchResource,
    LakeResource,
    RedisResource,
    LocalSparkRunner,
    SegmentJobRunner,
)
from segmentation_assets.emr_runner import EmrServerlessRunner
from resources.settings import Settings, get_settings
from segmentation_assets.calculation import build_members_asset
from segmentation_assets.partitions import segment_partitions
from segmentation_assets.automation import publish_automation_sensor
from segmentation_assets.index_and_alias import alias_key, build_alias_asset, build_index_asset, index_key
from segmentation_assets.rollback import rollback_alias_job
from segmentation_assets.schedules import refresh_job, refresh_schedule
from segmentation_assets.core.segment_types import SEGMENT_TYPES


# BackfillPolicy is marked beta in this Dagster version; we rely on it knowingly.
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*backfill_policy.*")


def build_segment_job_runner(settings: Settings) -> SegmentJobRunner:
    if settings.spark_mode == "emr":
        missing = [n for n in ("emr_application_id", "emr_execution_role_arn", "emr_code_uri") if not getattr(settings, n)]
        if missing:
            raise ValueError(f"SEGMENTATION_SPARK_MODE=emr needs {', '.join('SEGMENTATION_' + n.upper() for n in missing)}")
        return EmrServerlessRunner(
            application_id=settings.emr_application_id,
            execution_role_arn=settings.emr_execution_role_arn,
            code_uri=settings.emr_code_uri,
        )
    return LocalSparkRunner(driver_memory=settings.spark_driver_memory, shuffle_partitions=settings.spark_shuffle_partitions)


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    return {
        "lake": LakeResource(uri=settings.lake_uri),
        "spark": build_segment_job_runner(settings),
        "config_store": ConfigStoreResource(database_url=settings.database_url),
        "search": ElasticsearchResource(
            url=settings.elasticsearch_url,
            index_prefix=settings.index_prefix,
            chunk_size=settings.ingest_chunk_size,
            bulk_bytes=settings.ingest_bulk_bytes,
            bulk_workers=settings.ingest_bulk_workers,
            max_retries=settings.ingest_max_retries,
            retry_backoff_seconds=settings.ingest_retry_backoff_seconds,
            error_tolerance=settings.ingest_error_tolerance,
            retention=settings.index_retention,
            replicas=settings.index_replicas,
        ),
        "redis": RedisResource(url=settings.coordination_redis_url, ingestion_lock_seconds=settings.ingest_lock_seconds),
    }


def build_definitions(settings: Settings) -> dg.Definitions:
    partitions_def = segment_partitions(settings.partition_granularity, settings.partitions_start_date)
    assets = []
    for segment_type in SEGMENT_TYPES.values():
        assets += [
            build_members_asset(
                segment_type,
                partitions_def,
                max_rejected_fraction=settings.max_rejected_fraction,
                results_retention_days=settings.results_retention_days,
            ),
            build_index_asset(segment_type, partitions_def),
            build_alias_asset(segment_type, partitions_def),
        ]
    refresh_jobs = [refresh_job(t, partitions_def) for t in SEGMENT_TYPES]
    schedules = [
        refresh_schedule(
            job,
            hour_of_day=settings.refresh_hour_of_day,
            minute_of_hour=settings.refresh_minute_of_hour,
            granularity=settings.partition_granularity,
        )
        for job in refresh_jobs
    ]
    publish_keys = [key for t in SEGMENT_TYPES for key in (index_key(t), alias_key(t))]
    # Spark runs in-process: one JVM per run, shared by every step, rather than one per step.
    return dg.Definitions(
        assets=assets,
        jobs=[rollback_alias_job, *refresh_jobs],
        schedules=schedules,
        sensors=[publish_automation_sensor(publish_keys)],
        resources=build_resources(settings),
        executor=dg.in_process_executor,
    )


defs = build_definitions(get_settings())
