"""Publishes hand-made segment memberships straight through the index writer, as the index and
alias assets would (new index, bulk, alias switch, a new generation recorded with the index it
serves), without running Spark."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from collections.abc import Iterator
from typing import Any

from elasticsearch import Elasticsearch, helpers

from resources.names import index_name
from resources.publishing.aliases import record_switch
from resources.publishing.index_writer import SegmentIndexWriter, chunk_documents
from resources.redis_clients import coordination_server, redis_client
from resources.settings import Settings

CALCULATED_AT = "2026-11-26T00:00:00Z"


def segment_attributes(segment_id: str, segment_type: str, partition_key: str, **attributes: Any) -> dict[str, Any]:
    labels = attributes.get("labels") or {}
    return {
        "segment_id": segment_id,
        "segment_type": segment_type,
        "partition_key": partition_key,
        "calculated_at": attributes.get("calculated_at", CALCULATED_AT),
        "name": attributes.get("name", f"name of {segment_id}"),
        "store_id": attributes.get("store_id"),
        "category": attributes.get("category"),
        "city": attributes.get("city"),
        "country": attributes.get("country"),
        "labels": labels,
        "label_pairs": [f"{k}:{v}" for k, v in sorted(labels.items())],
    }


def publish(
    settings: Settings,
    segment_type: str,
    segments: dict[str, tuple[dict[str, Any], list[str]]],
    *,
    partition_key: str = "2026-11-25",
    chunk_size: int = 50_000,
) -> str:
    """segment_id -> (attributes, members); answers the new index, now behind the aliases."""
    es = Elasticsearch(settings.elasticsearch_url, request_timeout=60)
    writer = SegmentIndexWriter(es, settings.index_prefix)
    name = index_name(settings.index_prefix, segment_type, partition_key, uuid.uuid4().hex)

    def documents() -> Iterator[dict[str, Any]]:
        for segment_id, (attributes, members) in sorted(segments.items()):
            attrs = segment_attributes(segment_id, segment_type, partition_key, **attributes)
            yield from chunk_documents(attrs, sorted(members), chunk_size)

    writer.create_index(name, meta={"segment_type": segment_type, "partition_key": partition_key, "run_id": "test"})
    actions = ({"_index": name, "_id": f"{d['segment_id']}#{d['chunk']}", "_source": d} for d in documents())
    helpers.bulk(es, actions, chunk_size=200)
    writer.finish_loading(name)
    writer.switch_alias(segment_type, name)
    with redis_client(coordination_server(settings)) as coordination:  # a Redis Cluster too, when the settings say so
        generation = record_switch(coordination, settings.index_prefix, segment_type, name, 0)
    writer.update_meta(name, generation=generation, published_at=datetime.now(timezone.utc).isoformat())
    es.close()
    return name
