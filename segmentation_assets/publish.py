"""Publishing a calculation: a new verified index, then an atomic alias switch (SPEC 1, 8)."""


from typing import Any

import dagster as dg

from resources.dagster_resources import ElasticsearchResource, LakeResource, RedisResource
from resources.index_names import index_name
from resources.ingestion_lock import ingestion_lock
from resources.segment_results import read_manifest, segment_documents
from segmentation_assets.calculation import members_key
from segmentation_assets.segment_types import SegmentType

COMPLETENESS_CHECK = "complete"


def index_key(segment_type: str) -> dg.AssetKey:
    return dg.AssetKey([segment_type, "index"])


def alias_key(segment_type: str) -> dg.AssetKey:
    return dg.AssetKey([segment_type, "alias"])


def generation_key(prefix: str) -> str:
    """Redis counter bumped by every alias switch; the API's cache keys on it."""
    return f"{prefix}:generation"


def completeness_mismatches(manifest: dict[str, Any], found: dict[str, tuple[int, int]]) -> dict[str, Any]:
    """Segments whose members in the index differ from the manifest, with both counts."""
    expected = {s["segment_id"]: s["member_count"] for s in manifest["segments"]}
    mismatches = {}
    for segment_id in sorted(set(expected) | set(found)):
        want = expected.get(segment_id)
        got = found.get(segment_id, (0, 0))[0]
        if want is None or want != got or segment_id not in found:
            mismatches[segment_id] = {"manifest": want, "index": got}
    return mismatches


def build_index_asset(segment_type: SegmentType, partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    key = index_key(segment_type.name)

    @dg.asset(
        key=key,
        deps=[members_key(segment_type.name)],
        group_name=segment_type.name,
        partitions_def=partitions_def,
        kinds={"elasticsearch"},
        check_specs=[
            dg.AssetCheckSpec(
                COMPLETENESS_CHECK,
                asset=key,
                blocking=True,
                description="Every segment's members in the new index equal the calculation's manifest.",
            )
        ],
        description=f"A new Elasticsearch index holding one {segment_type.name} calculation, bulk-loaded "
        "from the lake and verified against its manifest. Readers do not see it until the alias moves.",
    )
    def index(
        context: dg.AssetExecutionContext,
        lake: LakeResource,
        search: ElasticsearchResource,
        redis: RedisResource,
    ) -> dg.MaterializeResult:
        results_uri = lake.lake().results_dir(segment_type.name, context.partition_key)
        manifest = read_manifest(lake.lake(), results_uri)
        name = index_name(search.index_prefix, segment_type.name, context.partition_key, context.run.run_id)
        writer = search.writer()
        with ingestion_lock(redis.client(), search.index_prefix, segment_type.name, redis.ingestion_lock_seconds):
            writer.create_index(
                name,
                meta={"segment_type": segment_type.name, "partition_key": context.partition_key, "run_id": context.run.run_id},
            )
            stats = writer.load(name, segment_documents(lake.lake(), results_uri, manifest, search.chunk_size))
            if stats.failed_documents:
                raise dg.Failure(
                    f"{stats.failed_documents} chunk documents failed after retries; segments affected: "
                    f"{', '.join(stats.failed_segments)}. The served alias is unchanged.",
                    metadata={"index": name, "failed_segments": dg.MetadataValue.json(stats.failed_segments)},
                )
            writer.finish_loading(name)
            found = writer.served_members(name)
        mismatches = completeness_mismatches(manifest, found)
        memberships = sum(members for members, _ in found.values())
        return dg.MaterializeResult(
            metadata={
                "index": name,
                "documents": stats.documents,
                "memberships": memberships,
                "segments": len(found),
                "load_seconds": stats.seconds,
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name=COMPLETENESS_CHECK,
                    passed=not mismatches,
                    severity=dg.AssetCheckSeverity.ERROR,
                    metadata={"mismatches": dg.MetadataValue.json(mismatches), "segments_checked": len(found)},
                )
            ],
        )

    return index


def _index_of_partition(context: dg.AssetExecutionContext, segment_type: str) -> str:
    """The index that the latest materialization of this partition's index asset built."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=index_key(segment_type), asset_partitions=[context.partition_key]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        raise dg.Failure(f"no index was built for {segment_type} partition {context.partition_key}")
    return str(records[0].asset_materialization.metadata["index"].value)


def build_alias_asset(segment_type: SegmentType, partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=alias_key(segment_type.name),
        deps=[index_key(segment_type.name)],
        group_name=segment_type.name,
        partitions_def=partitions_def,
        kinds={"elasticsearch"},
        description=f"The aliases that serve {segment_type.name}: moved atomically to the partition's "
        "verified index. Lookups read only through them.",
    )
    def alias(
        context: dg.AssetExecutionContext, search: ElasticsearchResource, redis: RedisResource
    ) -> dg.MaterializeResult:
        new_index = _index_of_partition(context, segment_type.name)
        writer = search.writer()
        client = redis.client()
        with ingestion_lock(client, search.index_prefix, segment_type.name, redis.ingestion_lock_seconds):
            previous = writer.switch_alias(segment_type.name, new_index)
            generation = client.incr(generation_key(search.index_prefix))
        context.log.info(f"{segment_type.name} now served from {new_index} (was {previous or 'nothing'})")
        return dg.MaterializeResult(
            metadata={
                "index": new_index,
                "previous_index": ", ".join(previous) or "none",
                "generation": int(generation),
            }
        )

    return alias
