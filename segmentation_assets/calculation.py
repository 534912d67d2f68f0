"""The calculation asset of a segment type: every active segment of the type, in one Spark job."""


import dagster as dg

from resources.dagster_resources import ConfigStoreResource, LakeResource, SparkResource
from segmentation_assets.segment_job import SegmentConfig, SegmentJobRequest, run_segment_job
from segmentation_assets.segment_types import SegmentType


def members_key(segment_type: str) -> dg.AssetKey:
    return dg.AssetKey([segment_type, "members"])


def build_members_asset(segment_type: SegmentType, partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=members_key(segment_type.name),
        group_name=segment_type.name,
        partitions_def=partitions_def,
        kinds={"spark", "parquet"},
        description=f"{segment_type.description} Members of every active segment of the type, "
        "as of the end of the partition's window, written to the lake with a manifest.",
    )
    def members(
        context: dg.AssetExecutionContext,
        lake: LakeResource,
        spark: SparkResource,
        config_store: ConfigStoreResource,
    ) -> dg.MaterializeResult:
        segments = config_store.segments().active_of_type(segment_type.name)
        request = SegmentJobRequest(
            segment_type=segment_type.name,
            partition_key=context.partition_key,
            as_of=context.partition_time_window.end.isoformat(),
            lake_uri=lake.uri,
            run_id=context.run.run_id,
            configs=[
                SegmentConfig(
                    segment_id=s.id,
                    version=s.version,
                    params=s.params,
                    attributes={
                        "name": s.name,
                        "labels": s.labels,
                        "store_id": s.store_id,
                        "category": s.category,
                        "city": s.city,
                        "country": s.country,
                    },
                )
                for s in segments
            ],
        )
        context.log.info(f"computing {len(segments)} active {segment_type.name} segments as of {request.as_of}")
        result = run_segment_job(spark.session(), request)
        return dg.MaterializeResult(
            metadata={
                "results": dg.MetadataValue.path(result.results_uri),
                "as_of": request.as_of,
                "segments": len(segments),
                "memberships": result.total_members,
                "member_counts": dg.MetadataValue.json(result.member_counts),
                "config_versions": dg.MetadataValue.json({c.segment_id: c.version for c in request.configs}),
                "rejected_rows": dg.MetadataValue.json(result.rejected_rows),
                "spark_seconds": result.seconds,
            }
        )

    return members
