"""Writes one calculation into a new Elasticsearch index, verifies it, and moves the aliases to it.

Each segment becomes one or more chunk documents: the segment's attributes plus up to
`chunk_size` customer ids. `customer_ids` is indexed (lookups are term queries on it) and
stored (exports read it back), but kept out of `_source` and doc values to keep lookups light.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from elasticsearch import Elasticsearch, helpers

from resources.index_names import read_alias, type_alias

SEGMENT_INDEX_MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "_source": {"excludes": ["customer_ids"]},
    "properties": {
        "segment_id": {"type": "keyword"},
        "segment_type": {"type": "keyword"},
        "name": {"type": "keyword", "index": False, "doc_values": False},
        "store_id": {"type": "keyword"},
        "category": {"type": "keyword"},
        "city": {"type": "keyword"},
        "country": {"type": "keyword"},
        "labels": {"type": "object", "enabled": False},
        "label_pairs": {"type": "keyword"},  # "key:value", so label filters are term queries
        "calculated_at": {"type": "date"},
        "partition_key": {"type": "keyword"},
        "chunk": {"type": "integer"},
        "chunks": {"type": "integer"},
        "chunk_members": {"type": "integer"},
        "member_count": {"type": "long"},
        "customer_ids": {"type": "keyword", "doc_values": False, "store": True},
    },
}


@dataclass(frozen=True)
class LoadStats:
    documents: int
    failed_documents: int
    failed_segments: list[str]
    seconds: float


def chunk_documents(
    segment_attributes: dict[str, Any], customer_ids: list[str], chunk_size: int
) -> Iterator[dict[str, Any]]:
    """A segment's chunk documents; a zero-member segment still gets one, so it is visible."""
    chunks = max(1, -(-len(customer_ids) // chunk_size))
    for chunk in range(chunks):
        members = customer_ids[chunk * chunk_size : (chunk + 1) * chunk_size]
        yield {
            **segment_attributes,
            "chunk": chunk,
            "chunks": chunks,
            "chunk_members": len(members),
            "member_count": len(customer_ids),
            "customer_ids": members,
        }


class SegmentIndexWriter:
    def __init__(self, client: Elasticsearch, prefix: str) -> None:
        self._es = client
        self._prefix = prefix

    def create_index(self, index: str, meta: dict[str, Any]) -> None:
        # Loading is fastest with no replicas and no refreshes; `finish_loading` restores both.
        self._es.indices.create(
            index=index,
            settings={"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "-1"},
            mappings={**SEGMENT_INDEX_MAPPING, "_meta": meta},
        )

    def load(self, index: str, documents: Iterable[dict[str, Any]], *, max_retries: int = 5) -> LoadStats:
        started = time.monotonic()
        ok = failed = 0
        failed_segments: set[str] = set()
        actions = (
            {"_index": index, "_id": f"{d['segment_id']}#{d['chunk']}", "_source": d} for d in documents
        )
        for success, item in helpers.streaming_bulk(
            self._es,
            actions,
            chunk_size=500,
            max_chunk_bytes=20 * 1024 * 1024,
            max_retries=max_retries,
            initial_backoff=1,
            raise_on_error=False,
            raise_on_exception=True,
        ):
            if success:
                ok += 1
            else:
                failed += 1
                failed_segments.add(item["index"]["_id"].split("#", 1)[0])
        return LoadStats(ok, failed, sorted(failed_segments), round(time.monotonic() - started, 3))

    def finish_loading(self, index: str) -> None:
        self._es.indices.put_settings(index=index, settings={"refresh_interval": None})
        self._es.indices.refresh(index=index)

    def served_members(self, index: str) -> dict[str, tuple[int, int]]:
        """segment_id -> (members found, chunk documents found), read back from the index."""
        found: dict[str, tuple[int, int]] = {}
        after: dict[str, Any] | None = None
        while True:
            composite: dict[str, Any] = {"size": 1000, "sources": [{"segment_id": {"terms": {"field": "segment_id"}}}]}
            if after:
                composite["after"] = after
            response = self._es.search(
                index=index,
                size=0,
                aggs={"segments": {"composite": composite, "aggs": {"members": {"sum": {"field": "chunk_members"}}}}},
            )
            buckets = response["aggregations"]["segments"]["buckets"]
            for bucket in buckets:
                found[bucket["key"]["segment_id"]] = (int(bucket["members"]["value"]), bucket["doc_count"])
            after = response["aggregations"]["segments"].get("after_key")
            if not buckets or after is None:
                return found

    def served_indices(self, segment_type: str) -> list[str]:
        alias = type_alias(self._prefix, segment_type)
        if not self._es.indices.exists_alias(name=alias):
            return []
        return sorted(self._es.indices.get_alias(name=alias).keys())

    def switch_alias(self, segment_type: str, new_index: str) -> list[str]:
        """Moves the type's alias and the read alias to `new_index` in one atomic request."""
        previous = self.served_indices(segment_type)
        aliases = (type_alias(self._prefix, segment_type), read_alias(self._prefix))
        actions: list[dict[str, Any]] = [
            {"remove": {"index": old, "alias": alias}} for old in previous if old != new_index for alias in aliases
        ]
        actions += [{"add": {"index": new_index, "alias": alias}} for alias in aliases]
        self._es.indices.update_aliases(actions=actions)
        return previous
