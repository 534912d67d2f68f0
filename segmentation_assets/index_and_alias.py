"""Publishing a calculation: a new verified index, then an atomic alias switch.

The index step takes the type's ingestion lock and, when the same run goes on to the alias step,
hands it over, so a run's load, verification and switch form one critical section: two ingestions
of one type never run at once, and nothing can slip in between a verification and its switch.
"""

# No `from __future__ import annotations`: Dagster checks the asset functions' annotations.
from typing import Any

import dagster as dg

from resources.publishing.aliases import (
    AliasMove,
    PublicationRefused,
    move_under_lock,
    publish_index,
)
from resources.publishing.ingestion import (
    IngestionFailed,
    IngestionReport,
    ingest_calculation,
)
from resources.publishing.lock import IngestionLock, IngestionLocked
from resources.publishing.results_reader import ResultsUnreadable
from segmentation_assets.automation import publish_automation_condition
from segmentation_assets.calculation import members_key
from segmentation_assets.conventions import OWNERS, asset_tags
from segmentation_assets.core.segment_types import SegmentType
from segmentation_assets.dagster_resources import (
    ConfigStoreResource,
    ElasticsearchResource,
    LakeResource,
    RedisResource,
)

COMPLETENESS_CHECK = "complete"
FAILED_CHUNKS_CHECK = "no_failed_chunks"


def index_key(segment_type: str) -> dg.AssetKey:
    return dg.AssetKey([segment_type, "index"])


def alias_key(segment_type: str) -> dg.AssetKey:
    return dg.AssetKey([segment_type, "alias"])


def _metadata(values: dict[str, Any]) -> dict[str, Any]:
    return {k: dg.MetadataValue.json(v) if isinstance(v, (list, dict)) else v for k, v in values.items()}


def _alias_follows(context: dg.AssetExecutionContext, segment_type: str) -> bool:
    """Whether this run goes on to the type's alias step (which then inherits the lock)."""
    steps = context.run.step_keys_to_execute
    if steps is not None:
        return alias_key(segment_type).to_python_identifier() in steps
    return alias_key(segment_type) in context.job_def.asset_layer.selected_asset_keys


def _newest_partition(context: dg.AssetExecutionContext) -> str:
    """The partition a run publishes: its own, or the newest of a backfill's range (run as one). The
    older ones of a range are calculated and recorded in the history, not indexed: the alias would
    keep the newer one served anyway, so their indices would only be loaded to be deleted."""
    return max(context.partition_keys)


def _lock(context: dg.AssetExecutionContext, search: ElasticsearchResource, redis: RedisResource, segment_type: str) -> IngestionLock:
    return IngestionLock(
        redis.client(), search.index_prefix, segment_type, redis.ingestion_lock_seconds, owner=context.run.run_id
    )


def _index_checks(report: IngestionReport) -> list[dg.AssetCheckResult]:
    return [
        dg.AssetCheckResult(
            check_name=COMPLETENESS_CHECK,
            passed=report.complete,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata=_metadata(
                {"mismatches": report.mismatches, "segments_checked": report.segments, "index": report.index}
            ),
            description=None if report.complete else f"{len(report.mismatches)} segments differ from the manifest; "
            f"{report.index} was deleted and the served alias is unchanged.",
        ),
        dg.AssetCheckResult(
            check_name=FAILED_CHUNKS_CHECK,
            passed=not report.failed_segments and not report.unreadable_parts,
            severity=dg.AssetCheckSeverity.WARN,
            metadata=_metadata(
                {
                    "failed_documents": report.failed_documents,
                    "failed_segments": report.failed_segments,
                    "unreadable_parts": report.unreadable_parts,
                }
            ),
            description=None
            if not (report.failed_segments or report.unreadable_parts)
            else "Within the error tolerance, these segments failed to load and serve instead: "
            + "; ".join(f"{s}: {what}" for s, what in report.failed_segments.items())
            + (f". Unreadable results parts: {', '.join(report.unreadable_parts)}" if report.unreadable_parts else ""),
        ),
    ]


def build_index_asset(
    segment_type: SegmentType, partitions_def: dg.PartitionsDefinition, retry_policy: dg.RetryPolicy | None = None
) -> dg.AssetsDefinition:
    key = index_key(segment_type.name)

    @dg.asset(
        key=key,
        deps=[members_key(segment_type.name)],
        group_name=segment_type.name,
        partitions_def=partitions_def,
        kinds={"elasticsearch"},
        owners=OWNERS,
        tags=asset_tags(segment_type.name, "index"),
        retry_policy=retry_policy,
        automation_condition=publish_automation_condition(),
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[
            dg.AssetCheckSpec(
                COMPLETENESS_CHECK,
                asset=key,
                blocking=True,
                description="Every segment's members in the new index equal the calculation's manifest.",
            ),
            dg.AssetCheckSpec(
                FAILED_CHUNKS_CHECK,
                asset=key,
                description="No chunk document failed after retries; with an error tolerance above 0, names "
                "the segments that did and what they serve instead.",
            ),
        ],
        description=f"A new Elasticsearch index holding one {segment_type.name} calculation, bulk-loaded "
        "from the lake and verified against its manifest. Readers do not see it until the alias moves.",
    )
    def index(
        context: dg.AssetExecutionContext,
        lake: LakeResource,
        search: ElasticsearchResource,
        redis: RedisResource,
        config_store: ConfigStoreResource,
    ) -> dg.MaterializeResult:
        partition_key = _newest_partition(context)
        try:
            with _lock(context, search, redis, segment_type.name).held() as lock:
                report = ingest_calculation(
                    search.writer(),
                    lake.lake(),
                    segment_type.name,
                    partition_key,
                    context.run.run_id,
                    search.ingestion_settings(),
                    confirm_lock=lock.confirm,
                )
                if report.complete and _alias_follows(context, segment_type.name):
                    lock.hand_over()
        except (IngestionLocked, IngestionFailed, ResultsUnreadable, FileNotFoundError) as error:
            raise dg.Failure(
                description=str(error),
                metadata=_metadata(getattr(error, "metadata", {})),
                # Another run's lock, or Elasticsearch lost midway, may pass; the results will not change.
                allow_retries=isinstance(error, (IngestionLocked, IngestionFailed)),
            ) from error
        if report.complete:
            config_store.history().set_index(
                segment_type=segment_type.name, partition_key=partition_key, run_id=report.calculation_run_id, index=report.index
            )
        context.log.info(
            f"{report.index}: {report.memberships} memberships in {report.documents} documents, "
            f"{report.seconds} s, {report.retried_documents} documents retried, {report.failed_documents} failed"
        )
        return dg.MaterializeResult(
            metadata=_metadata(
                {
                    "index": report.index,
                    "partition": partition_key,
                    "partitions_not_indexed": ", ".join(k for k in context.partition_keys if k != partition_key) or "none",
                    "previous_index": report.served_before or "none",
                    "documents": report.documents,
                    "bytes": report.bytes,
                    "memberships": report.memberships,
                    "segments": report.segments,
                    "seconds": report.seconds,
                    "load_seconds": report.load_seconds,
                    "bulk_requests": report.requests,
                    "retried_documents": report.retried_documents,
                    "failed_documents": report.failed_documents,
                    "deleted": not report.complete,
                }
            ),
            check_results=_index_checks(report),
        )

    return index


def _index_of_partition(context: dg.AssetExecutionContext, segment_type: str) -> str:
    """The index that the latest materialization of this partition's index asset built."""
    partition_key = _newest_partition(context)
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=index_key(segment_type), asset_partitions=[partition_key]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        raise dg.Failure(f"no index was built for {segment_type} partition {partition_key}", allow_retries=False)
    return str(records[0].asset_materialization.metadata["index"].value)


def _alias_metadata(requested: str, move: AliasMove) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "index": move.served,
        "requested_index": requested,
        "previous_index": ", ".join(move.previous) or "none",
        "switched": move.generation is not None,
        "kept_newer": move.kept_newer,
        "deleted_indices": move.deleted,
        "problems": move.problems,
    }
    if move.generation is not None:
        metadata["generation"] = move.generation
    if move.compaction is not None:
        metadata["compaction"] = move.compaction
    return _metadata(metadata)


def build_alias_asset(
    segment_type: SegmentType, partitions_def: dg.PartitionsDefinition, retry_policy: dg.RetryPolicy | None = None
) -> dg.AssetsDefinition:
    @dg.asset(
        key=alias_key(segment_type.name),
        deps=[index_key(segment_type.name)],
        group_name=segment_type.name,
        partitions_def=partitions_def,
        kinds={"elasticsearch"},
        owners=OWNERS,
        tags=asset_tags(segment_type.name, "alias"),
        retry_policy=retry_policy,
        automation_condition=publish_automation_condition(),
        backfill_policy=dg.BackfillPolicy.single_run(),
        description=f"The aliases that serve {segment_type.name}: moved atomically to the partition's "
        "verified index, unless a newer calculation is served already. Lookups read only through them.",
    )
    def alias(
        context: dg.AssetExecutionContext, search: ElasticsearchResource, redis: RedisResource
    ) -> dg.MaterializeResult:
        requested = _index_of_partition(context, segment_type.name)
        try:
            move = move_under_lock(
                _lock(context, search, redis, segment_type.name),
                lambda: publish_index(search.writer(), redis.client(), segment_type.name, requested, search.retention),
            )
        except (IngestionLocked, PublicationRefused) as error:
            raise dg.Failure(description=str(error), allow_retries=isinstance(error, IngestionLocked)) from error
        if move.kept_newer:
            context.log.warning(f"kept newer: {move.served} stays served; {requested} is an older calculation")
        else:
            context.log.info(f"{segment_type.name} served from {move.served} (was {', '.join(move.previous) or 'nothing'})")
        if move.deleted:
            context.log.info(f"retention deleted {', '.join(move.deleted)}")
        for problem in move.problems:
            context.log.warning(problem)
        return dg.MaterializeResult(metadata=_alias_metadata(requested, move))

    return alias
