"""The calculation asset of a segment type: every active segment of the type, in one Spark job."""

from datetime import datetime, timezone

import boto3
import dagster as dg

from pydantic import ValidationError

from resources.config_store.history import CalculationHistory, EarlierCalculation, RecordedSegment
from resources.config_store.segments import Segment
from resources.lake.manifest import read_manifest
from resources.lake.retention import ensure_lifecycle_rule, remove_expired_results
from resources.lake.storage import Lake
from resources.targeting import SegmentAttributes
from segmentation_assets.core.segment_job import (
    SegmentConfig,
    SegmentJobRequest,
    SegmentJobResult,
)
from segmentation_assets.conventions import OWNERS, asset_tags
from segmentation_assets.core.segment_types import SegmentType
from segmentation_assets.dagster_resources import (
    ConfigStoreResource,
    LakeResource,
    SegmentJobRunner,
)

# A materialization's metadata is one event-log row, read by every UI page that shows the asset:
# per-segment figures go there only up to this many segments (at 100K they were ~8 MB an event).
# Beyond it, the segments that changed most; every segment's figures stay in the calculation
# history (GET /v1/segments/{id}/history) and the manifest.
PER_SEGMENT_METADATA_LIMIT = 1_000
DATA_QUALITY_CHECK = "data_quality"
CONFIGS_CHECK = "configs_valid"


def members_key(segment_type: str) -> dg.AssetKey:
    return dg.AssetKey([segment_type, "members"])


def _earlier_results(
    lake: Lake, segment_type: str, configs: list[SegmentConfig], earlier: dict[str, EarlierCalculation]
) -> tuple[dict[str, list[str]], list[str]]:
    """(results folder -> segments compared with it, segments calculated for the first time). A
    segment whose earlier results are gone, or were overwritten by another run, is in neither."""
    compared: dict[str, list[str]] = {}
    first: list[str] = []
    still_there: dict[EarlierCalculation, str | None] = {}
    for config in configs:
        calculation = earlier.get(config.segment_id)
        if calculation is None:
            first.append(config.segment_id)
            continue
        if calculation not in still_there:
            uri = lake.results_dir(segment_type, calculation.partition_key)
            try:
                same_run = read_manifest(lake, uri).run_id == calculation.run_id
            except FileNotFoundError:
                same_run = False
            still_there[calculation] = uri if same_run else None
        if (uri := still_there[calculation]) is not None:
            compared.setdefault(uri, []).append(config.segment_id)
    return compared, first


def _job_request(
    context: dg.AssetExecutionContext,
    lake: Lake,
    segment_type: SegmentType,
    partition_key: str,
    configs: list[SegmentConfig],
    history: CalculationHistory,
) -> SegmentJobRequest:
    partitions_def = context.assets_def.partitions_def
    assert isinstance(partitions_def, dg.TimeWindowPartitionsDefinition)
    window = partitions_def.time_window_for_partition_key(partition_key)
    compared, first = _earlier_results(
        lake, segment_type.name, configs, history.earlier_calculations(segment_type.name, partition_key)
    )
    return SegmentJobRequest(
        segment_type=segment_type.name,
        partition_key=partition_key,
        as_of=window.end.isoformat(),
        lake_uri=lake.uri,
        run_id=context.run.run_id,
        configs=configs,
        earlier_results=compared,
        first_calculations=first,
    )


def _record(history: CalculationHistory, result: SegmentJobResult) -> None:
    manifest = result.manifest
    history.record(
        segment_type=manifest.segment_type,
        partition_key=manifest.partition_key,
        run_id=manifest.run_id,
        calculated_at=datetime.fromisoformat(manifest.calculated_at),
        segments=[
            RecordedSegment(s.segment_id, s.version, s.member_count, s.entered, s.exited) for s in manifest.segments
        ],
    )


def _runnable_configs(segment_type: SegmentType, segments: list[Segment]) -> tuple[list[SegmentConfig], dict[str, str]]:
    """(the configs to compute, segment_id -> why its stored params are refused). A config broken
    behind the API's back (an edit in SQL, a type's parameters changed) is left out, not fatal."""
    configs, broken = [], {}
    for s in segments:
        try:
            segment_type.parse_params(s.params)
        except ValidationError as error:
            broken[s.id] = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'params'}: {e['msg']}" for e in error.errors())
            continue
        attributes = SegmentAttributes.model_validate(s, from_attributes=True).model_dump()
        configs.append(SegmentConfig(segment_id=s.id, version=s.version, params=s.params, attributes=attributes))
    return configs, broken


def _per_segment_metadata(result: SegmentJobResult, configs: list[SegmentConfig]) -> dict[str, object]:
    segments = result.segments
    if len(segments) > PER_SEGMENT_METADATA_LIMIT:
        segments = sorted(segments, key=lambda s: (-((s.entered or 0) + (s.exited or 0)), s.segment_id))
        segments = segments[:PER_SEGMENT_METADATA_LIMIT]
        listed = f"the {len(segments):,} of {len(configs):,} segments whose members changed most"
    else:
        listed = "every segment"
    return {
        "per_segment": dg.MetadataValue.json(
            {s.segment_id: s.model_dump(include={"member_count", "entered", "exited"}) for s in segments}
        ),
        "per_segment_lists": listed,
        "config_versions": dg.MetadataValue.json({s.segment_id: s.version for s in segments}),
    }


def _metadata(results: dict[str, SegmentJobResult], configs: list[SegmentConfig]) -> dict[str, object]:
    last = results[max(results)]
    return {
        "partitions": ", ".join(results),
        "results": dg.MetadataValue.path(last.results_uri),
        # Numbers, so that the UI plots them over partitions.
        "segments": len(configs),
        "memberships": last.total_members,
        "entered": sum(s.entered or 0 for s in last.segments),
        "exited": sum(s.exited or 0 for s in last.segments),
        **_per_segment_metadata(last, configs),
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
    retry_policy: dg.RetryPolicy | None = None,
) -> dg.AssetsDefinition:
    key = members_key(segment_type.name)

    @dg.asset(
        key=key,
        group_name=segment_type.name,
        partitions_def=partitions_def,
        kinds={"spark", "parquet"},
        owners=OWNERS,
        tags=asset_tags(segment_type.name, "calculation"),
        retry_policy=retry_policy,
        # A backfill runs as one job: one Spark session and one read of the configs for all its partitions.
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[
            dg.AssetCheckSpec(
                DATA_QUALITY_CHECK,
                asset=key,
                description=f"At most {max_rejected_fraction:.2%} of raw rows read are left out as invalid.",
            ),
            dg.AssetCheckSpec(
                CONFIGS_CHECK,
                asset=key,
                description="Every active segment's stored parameters are valid for its type; "
                "one that is not is left out of the calculation and named here.",
            ),
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
        configs, broken = _runnable_configs(segment_type, config_store.segments().active_of_type(segment_type.name))
        for segment_id, why in broken.items():
            context.log.warning(f"segment {segment_id} left out: its parameters are not valid for {segment_type.name}: {why}")
        history = config_store.history()
        results: dict[str, SegmentJobResult] = {}
        for partition_key in context.partition_keys:
            request = _job_request(context, lake.lake(), segment_type, partition_key, configs, history)
            context.log.info(f"computing {len(configs)} active {segment_type.name} segments as of {request.as_of}")
            results[partition_key] = spark.run(context, request)
            _record(history, results[partition_key])
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
                ),
                dg.AssetCheckResult(
                    check_name=CONFIGS_CHECK,
                    passed=not broken,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={"left_out": dg.MetadataValue.json(broken)},
                    description=f"{len(broken)} segments left out: their parameters are not valid" if broken else None,
                ),
            ],
        )

    return members
