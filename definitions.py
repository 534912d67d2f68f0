"""Everything Dagster shows: per segment type, its calculation, index and alias assets."""

from __future__ import annotations

import warnings
from datetime import timedelta

import dagster as dg
from dagster_pyspark import LazyPySparkResource

from segmentation_assets.dagster_resources import (
    ConfigStoreResource,
    ElasticsearchResource,
    LakeResource,
    RedisResource,
    LocalSparkRunner,
    SegmentJobRunner,
)
from segmentation_assets.emr_runner import EmrServerlessRunner
from segmentation_assets.secret_settings import secret_setting
from resources.redis_clients import coordination_server
from resources.settings import Settings, get_settings
from segmentation_assets.calculation import build_members_asset
from segmentation_assets.conventions import step_retry_policy
from segmentation_assets.partitions import segment_partitions
from segmentation_assets.alerts import alert_sensors, alert_webhook_resource
from segmentation_assets.automation import publish_automation_sensor
from segmentation_assets.freshness import alias_freshness_checks, alias_freshness_sensor, freshness_deadline_cron
from segmentation_assets.index_and_alias import alias_key, build_alias_asset, build_index_asset, index_key
from segmentation_assets.previews import PREVIEW_SPARK_SETTINGS, build_preview_job, preview_sensor
from segmentation_assets.refresh import refresh_on_change_sensor
from segmentation_assets.rollback import rollback_alias_job
from segmentation_assets.run_logs import log_runs_as_platform_lines, platform_console_logger
from segmentation_assets.schedules import refresh_job, refresh_schedule
from segmentation_assets.core.segment_types import SEGMENT_TYPES
from segmentation_assets.core.spark_session import local_spark_config


# BackfillPolicy is marked beta in this Dagster version; we rely on it knowingly.
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*backfill_policy.*")
# Runs log the platform's JSON lines, whoever launches them (segmentation_assets/run_logs.py).
log_runs_as_platform_lines()


def local_spark(settings: Settings, **extra: str) -> LazyPySparkResource:
    """A Spark session in the run's own process (local[*]): the calculation's in local mode, and
    the previews' in either mode (with `PREVIEW_SPARK_SETTINGS`)."""
    spark_config = local_spark_config(
        driver_memory=settings.spark_driver_memory,
        shuffle_partitions=settings.spark_shuffle_partitions,
        lake_uri=settings.lake_uri,  # a lake on S3 adds the s3a connector
    )
    return LazyPySparkResource(spark_config=spark_config | extra)


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
    return LocalSparkRunner(pyspark=local_spark(settings))


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """The URLs, which can hold passwords, go through `dg.EnvVar`: the UI shows a variable's name only."""
    coordination_redis = "lock_redis_url" if settings.lock_redis_url else "redis_url"
    return {
        "lake": LakeResource(uri=settings.lake_uri),
        "spark": build_segment_job_runner(settings),
        # Previews run in the preview run's process, whatever the Spark mode (docs/operations.md).
        "preview_spark": local_spark(settings, **PREVIEW_SPARK_SETTINGS),
        "config_store": ConfigStoreResource(database_url=secret_setting(settings, "database_url")),
        "search": ElasticsearchResource(
            url=secret_setting(settings, "elasticsearch_url"),
            index_prefix=settings.index_prefix,
            chunk_size=settings.ingest_chunk_size,
            bulk_bytes=settings.ingest_bulk_bytes,
            bulk_workers=settings.ingest_bulk_workers,
            max_retries=settings.ingest_max_retries,
            retry_backoff_seconds=settings.ingest_retry_backoff_seconds,
            error_tolerance=settings.ingest_error_tolerance,
            retention=settings.index_retention,
            replicas=settings.index_replicas,
            shards=settings.index_shards,
            memberships_per_shard=settings.index_memberships_per_shard,
        ),
        "redis": RedisResource.for_server(
            coordination_server(settings),
            url=secret_setting(settings, coordination_redis),
            ingestion_lock_seconds=settings.ingest_lock_seconds,
        ),
        "alert_webhook": alert_webhook_resource(settings),
    }


def build_definitions(settings: Settings) -> dg.Definitions:
    partitions_def = segment_partitions(settings.partition_granularity, settings.partitions_start_date)
    retry_policy = step_retry_policy(settings.step_max_retries, settings.step_retry_delay_seconds)
    assets = []
    for segment_type in SEGMENT_TYPES.values():
        assets += [
            build_members_asset(
                segment_type,
                partitions_def,
                max_rejected_fraction=settings.max_rejected_fraction,
                results_retention_days=settings.results_retention_days,
                retry_policy=retry_policy,
            ),
            build_index_asset(segment_type, partitions_def, retry_policy),
            build_alias_asset(segment_type, partitions_def, retry_policy),
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
    previews = build_preview_job(partitions_def)
    publish_keys = [key for t in SEGMENT_TYPES for key in (index_key(t), alias_key(t))]
    freshness_checks = alias_freshness_checks(
        SEGMENT_TYPES,
        freshness_deadline_cron(settings.partition_granularity, settings.refresh_hour_of_day, settings.refresh_minute_of_hour),
    )
    # Spark runs in-process: one JVM per run, shared by every step, rather than one per step.
    return dg.Definitions(
        assets=assets,
        asset_checks=freshness_checks,
        jobs=[rollback_alias_job, *refresh_jobs, previews],
        schedules=schedules,
        sensors=[
            publish_automation_sensor(publish_keys),
            refresh_on_change_sensor(
                dict(zip(SEGMENT_TYPES, refresh_jobs)),
                partitions_def,
                settle_seconds=settings.refresh_settle_seconds,
                max_wait_seconds=settings.refresh_max_wait_seconds,
            ),
            alias_freshness_sensor(freshness_checks),
            *alert_sensors(),
            preview_sensor(
                previews,
                timeout_seconds=settings.preview_timeout_seconds,
                retention=timedelta(hours=settings.preview_retention_hours),
            ),
        ],
        resources=build_resources(settings),
        loggers={"console": platform_console_logger},
        executor=dg.in_process_executor,
    )


defs = build_definitions(get_settings())
