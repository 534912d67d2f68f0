"""The calculation asset of a segment type: every active segment of the type, in one Spark job."""

from datetime import datetime, timezone

import boto3
import dagster as dg

from resources.lake.retention import ensure_lifecycle_rule, remove_expired_results
from resources.lake.storage import Lake
from resources.targeting import SegmentAttributes
from segmentation_assets.core.segment_job import (
    SegmentConfig,
    SegmentJobRequest,
    SegmentJobResult,
)
from segmentation_assets.core.segment_types import SegmentType
from segmentation_assets.dagster_resources import (
    ConfigStoreResource,
    LakeResource,
    SegmentJobRunner,
)

DATA_QUALITY_CHECK = "data_quality"


def members_key(segment_type: str) -> dg.AssetKey:
    return dg.AssetKey([segment_type, "members"])


def _job_request(
    context: dg.AssetExecutionContext,
    lake: Lake,
    segment_type: SegmentType,
    partition_key: str,
    configs: list[SegmentConfig],
) -> SegmentJobRequest:
    partitions_def = context.assets_def.partitions_def
    assert isinstance(partitions_def, dg.TimeWindowPartitionsDefinition)
    window = partitions_def.time_window_for_partition_key(partition_key)
    previous_window = partitions_def.get_prev_partition_window(window.start)
    previous_key = partitions_def.get_partition_key_for_timestamp(previous_window.start.timestamp()) if previous_window else None
    return SegmentJobRequest(
        segment_type=segment_type.name,
        partition_key=partition_key,
        as_of=window.end.isoformat(),
        lake_uri=lake.uri,
        run_id=context.run.run_id,
        configs=configs,
        previous_results_uri=lake.results_dir(segment_type.name, previous_key) if previous_key else None,
    )


def _metadata(results: dict[str, SegmentJobResult], configs: list[SegmentConfig]) -> dict[str, object]:
    last = results[max(results)]
    per_segment = {
        s.segment_id: s.model_dump(include={"member_count", "entered", "exited"}) for s in last.segments
    }
    return {
        "partitions": ", ".join(results),
        "results": dg.MetadataValue.path(last.results_uri),
        "segments": len(configs),
        "memberships": last.total_members,
        "per_segment": dg.MetadataValue.json(per_segment),
        "config_versions": dg.MetadataValue.json({c.segment_id: c.version for c in configs}),
        "rows_read": dg.MetadataValue.json(last.quality.rows_read),
        "rejected_rows": dg.MetadataValue.json(last.quality.rejected),
        "spark_seconds": round(sum(r.seconds for r in results.values()), 3),
    }


def _apply_retention(lake: Lake, segment_type: str, retention_days: int) -> dict[str, object]:
    if lake.is_s3:
        rule = ensure_lifecycle_rule(lake, retention_days, boto3.client("s3"))
        return {"results_retention": f"S3 lifecycle rule {rule['ID']}: expire after {retention_days} days"}
    removed = remove_expired_results(lake, segment_type, retention_days, datetime.now(timezone.utc))
    return {"results_removed": ", ".join(removed) or "none"}


def build_members_asset(
    segment_type: SegmentType,
    partitions_def: dg.PartitionsDefinition,
    *,
    max_rejected_fraction: float,
    results_retention_days: int,
) -> dg.AssetsDefinition:
    key = members_key(segment_type.name)

    @dg.asset(
        key=key,
        group_name=segment_type.name,
        partitions_def=partitions_def,
        kinds={"spark", "parquet"},
        # A backfill runs as one job: one Spark session and one read of the configs for all its partitions.
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[
            dg.AssetCheckSpec(
                DATA_QUALITY_CHECK,
                asset=key,
                description=f"At most {max_rejected_fraction:.2%} of raw rows read are left out as invalid.",
            )
        ],
        description=f"{segment_type.description} Members of every active segment of the type, "
        "as of the end of the partition's window, written to the lake with a manifest.",
    )
    def members(
        context: dg.AssetExecutionContext,
        lake: LakeResource,
        spark: SegmentJobRunner,
        config_store: ConfigStoreResource,
    ) -> dg.MaterializeResult:
        segments = config_store.segments().active_of_type(segment_type.name)
        configs = [
            SegmentConfig(
                segment_id=s.id,
                version=s.version,
                params=s.params,
                attributes=SegmentAttributes.model_validate(s, from_attributes=True).model_dump(),
            )
            for s in segments
        ]
        results: dict[str, SegmentJobResult] = {}
        for partition_key in context.partition_keys:
            request = _job_request(context, lake.lake(), segment_type, partition_key, configs)
            context.log.info(f"computing {len(configs)} active {segment_type.name} segments as of {request.as_of}")
            results[partition_key] = spark.run(context, request)
        worst = max(r.quality.rejected_fraction for r in results.values())
        retention = _apply_retention(lake.lake(), segment_type.name, results_retention_days)
        return dg.MaterializeResult(
            metadata={**_metadata(results, configs), **retention},
            check_results=[
                dg.AssetCheckResult(
                    check_name=DATA_QUALITY_CHECK,
                    passed=worst <= max_rejected_fraction,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={
                        "rejected_fraction": round(worst, 6),
                        "threshold": max_rejected_fraction,
                        "rejected_rows": dg.MetadataValue.json({k: r.quality.rejected for k, r in results.items()}),
                    },
                )
            ],
        )

    return members
