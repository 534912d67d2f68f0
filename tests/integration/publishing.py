"""Helpers of the publishing tests: run the index and alias assets of one type through Dagster
against the real servers, and read back what the read alias serves."""

from __future__ import annotations

from typing import Any

import dagster as dg
from elasticsearch import Elasticsearch

from definitions import build_resources
from resources.names import ingestion_lock_key, read_alias
from resources.publishing.index_writer import SegmentIndexWriter
from resources.settings import Settings
from segmentation_assets.core.segment_types import SEGMENT_TYPES
from segmentation_assets.index_and_alias import (
    alias_key,
    build_alias_asset,
    build_index_asset,
    index_key,
)
from segmentation_assets.partitions import segment_partitions
from tests.redis_servers import coordination_redis

TYPE = "new_customers"


def publish(
    settings: Settings, partition_key: str, instance: dg.DagsterInstance, *, steps: tuple[str, ...] = ("index", "alias")
) -> dg.ExecuteInProcessResult:
    """Materializes the type's index and/or alias for one partition, as `segmentation run` would."""
    partitions = segment_partitions(settings.partition_granularity, settings.partitions_start_date)
    builders = {"index": build_index_asset, "alias": build_alias_asset}
    assets = [builders[step](SEGMENT_TYPES[TYPE], partitions) for step in steps]
    return dg.materialize(
        assets, partition_key=partition_key, resources=build_resources(settings), instance=instance, raise_on_error=False
    )


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    texts = []
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            texts.append(data.user_failure_data.description if data.user_failure_data else str(data.error))
    return "\n".join(t or "" for t in texts)


def materialization(result: dg.ExecuteInProcessResult, step: str) -> dict[str, Any]:
    key = index_key(TYPE) if step == "index" else alias_key(TYPE)
    [found] = [m for m in result.asset_materializations_for_node(key.to_python_identifier())]
    return {k: v.value for k, v in found.metadata.items()}


def check_passed(result: dg.ExecuteInProcessResult, check_name: str) -> bool:
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == check_name]
    return evaluation.passed


def writer(settings: Settings, url: str | None = None) -> SegmentIndexWriter:
    return SegmentIndexWriter(Elasticsearch(url or settings.elasticsearch_url), settings.index_prefix)


def served(settings: Settings) -> list[str]:
    return writer(settings).served_indices(TYPE)


def type_index_names(settings: Settings) -> set[str]:
    return {i.name for i in writer(settings).type_indices(TYPE)}


def lookup(es: Elasticsearch, settings: Settings, customer_ids: list[str]) -> frozenset[tuple[str, str, str]]:
    """(customer, segment, calculated_at) for these customers, as one search of the read alias answers
    (the same query `SegmentReader` sends, for several customers at once)."""
    named = [{"term": {"customer_ids": {"value": c, "_name": c}}} for c in customer_ids]
    response = es.search(
        index=read_alias(settings.index_prefix),
        query={"constant_score": {"filter": {"bool": {"filter": [{"terms": {"customer_ids": customer_ids}}], "should": named}}}},
        source=["segment_id", "calculated_at"],
        size=10_000,
        ignore_unavailable=True,
        allow_no_indices=True,
    )
    return frozenset(
        (customer, hit["_source"]["segment_id"], hit["_source"]["calculated_at"])
        for hit in response["hits"]["hits"]
        for customer in hit.get("matched_queries", [])
    )


def expected_answer(manifest: dict[str, Any], segments: dict[str, list[str]], customer_ids: list[str]) -> frozenset[tuple[str, str, str]]:
    return frozenset(
        (c, segment_id, manifest["calculated_at"]) for segment_id, members in segments.items() for c in customer_ids if c in members
    )


def lock_holder(settings: Settings) -> bytes | None:
    return coordination_redis(settings).get(ingestion_lock_key(settings.index_prefix, TYPE))
