"""Rollback: points a type's aliases back at the previous (or a named) retained index.

`segmentation rollback` and the `rollback_alias` Dagster job share `roll_back_type`; both take the
type's ingestion lock, so a rollback never interleaves with an ingestion of the type.
"""

# No `from __future__ import annotations`: Dagster reads the op's config type from its annotation.
import uuid

import dagster as dg

from resources.publishing.aliases import AliasMove, move_under_lock, roll_back
from resources.publishing.index_writer import SegmentIndexWriter
from resources.publishing.lock import IngestionLock
from resources.redis_clients import SyncRedis, coordination_server
from resources.settings import Settings
from segmentation_assets.core.segment_types import SEGMENT_TYPES
from segmentation_assets.dagster_resources import ElasticsearchResource, RedisResource

ROLLBACK_JOB = "rollback_alias"


def roll_back_type(
    writer: SegmentIndexWriter, client: SyncRedis, segment_type: str, to: str | None, lock_seconds: int
) -> AliasMove:
    if segment_type not in SEGMENT_TYPES:
        raise ValueError(f"unknown segment type {segment_type!r}; known: {', '.join(SEGMENT_TYPES)}")
    lock = IngestionLock(client, writer.prefix, segment_type, lock_seconds, owner=f"rollback-{uuid.uuid4().hex[:12]}")
    return move_under_lock(lock, lambda: roll_back(writer, client, segment_type, to))


def roll_back_with_settings(settings: Settings, segment_type: str, to: str | None) -> AliasMove:
    """For the command line: the same clients the Dagster resources would build."""
    search = ElasticsearchResource(url=settings.elasticsearch_url, index_prefix=settings.index_prefix)
    store = RedisResource.for_server(coordination_server(settings), ingestion_lock_seconds=settings.ingest_lock_seconds)
    try:
        return roll_back_type(search.writer(), store.client(), segment_type, to, settings.ingest_lock_seconds)
    finally:
        search.client().close()
        store.client().close()


class RollbackConfig(dg.Config):
    segment_type: str
    to_index: str | None = None  # default: the retained index calculated just before the served one


@dg.op(description="Points the type's aliases at the previous (or the named) retained index; bumps the generation.")
def roll_back_alias(
    context: dg.OpExecutionContext, config: RollbackConfig, search: ElasticsearchResource, redis: RedisResource
) -> dg.Output[str]:
    move = roll_back_type(search.writer(), redis.client(), config.segment_type, config.to_index, redis.ingestion_lock_seconds)
    context.log.info(f"{config.segment_type} served from {move.served} (was {', '.join(move.previous) or 'nothing'})")
    for problem in move.problems:
        context.log.warning(problem)
    metadata = {
        "index": move.served,
        "previous_index": ", ".join(move.previous) or "none",
        "problems": dg.MetadataValue.json(move.problems),
    }
    if move.generation is not None:
        metadata["generation"] = move.generation
    return dg.Output(move.served, metadata=metadata)


@dg.job(name=ROLLBACK_JOB, description="Rollback (or roll forward with `to_index`) of one segment type's aliases.")
def rollback_alias_job() -> None:
    roll_back_alias()
