"""The Elasticsearch side of publishing: segment indices, their chunk documents, and the aliases.

Each segment becomes one or more chunk documents: the segment's attributes plus up to
`chunk_size` customer ids, so that no document or bulk request nears Elasticsearch's size limits.
`customer_ids` is indexed (lookups are term queries on it) and stored (exports read it back), but
kept out of `_source` and doc values to keep lookups light.

Each index records in its mapping's `_meta` what it holds (type, partition, run), whether it was
verified, and the alias generation it was last published under, so that the cluster itself says
which indices may be served and in what order they were calculated.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from elasticsearch import Elasticsearch, NotFoundError, helpers

from resources.names import read_alias, type_alias, type_index_pattern
from resources.publishing.bulk_load import BulkLoader, BulkSettings, LoadReport
from resources.settings import checked_replicas
from resources.targeting import TARGETING_ATTRIBUTES

log = logging.getLogger(__name__)

# Lookups are term queries that every shard of the served indices answers, so fewer, larger shards
# serve them cheapest (replicas, not shards, add read capacity): a shard per 500M memberships is
# 6-42 GB as measured (short ids to 36-character ones), under Elastic's 50 GB ceiling.
DEFAULT_MEMBERSHIPS_PER_SHARD = 500_000_000
MAX_SIZED_SHARDS = 16  # a sized index never has more; past it, shards grow beyond the size instead

SEGMENT_INDEX_MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "_source": {"excludes": ["customer_ids"]},
    "properties": {
        "segment_id": {"type": "keyword"},
        "segment_type": {"type": "keyword"},
        "name": {"type": "keyword", "index": False, "doc_values": False},
        **{attribute: {"type": "keyword"} for attribute in TARGETING_ATTRIBUTES},
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


def shard_count(memberships: int, memberships_per_shard: int = DEFAULT_MEMBERSHIPS_PER_SHARD, override: int = 0) -> int:
    """Primary shards of a calculation's index: `override` when set, else one per
    `memberships_per_shard` memberships, rounded up, from 1 to `MAX_SIZED_SHARDS`."""
    if override > 0:
        return override
    return min(MAX_SIZED_SHARDS, max(1, -(-memberships // memberships_per_shard)))


def replica_settings(replicas: str) -> dict[str, Any]:
    """Index settings for `SEGMENTATION_INDEX_REPLICAS`: a number (`1`) is that many replicas, with
    auto-expansion off; a range (`0-1`, `1-all`) is `auto_expand_replicas`."""
    if checked_replicas(replicas).isdigit():
        return {"number_of_replicas": int(replicas), "auto_expand_replicas": False}
    return {"auto_expand_replicas": replicas}


def chunk_id(segment_id: str, chunk: int) -> str:
    return f"{segment_id}#{chunk}"


def segment_of(document_id: str) -> str:
    return document_id.rsplit("#", 1)[0]


def _chunk_document(
    segment_attributes: dict[str, Any], chunk: int, chunks: int, chunk_members: int, member_count: int, customer_ids: Any
) -> dict[str, Any]:
    return {
        **segment_attributes,
        "chunk": chunk,
        "chunks": chunks,
        "chunk_members": chunk_members,
        "member_count": member_count,
        "customer_ids": customer_ids,  # last: the bulk of the document
    }


def chunk_documents(
    segment_attributes: dict[str, Any], customer_ids: list[str], chunk_size: int
) -> Iterator[dict[str, Any]]:
    """A segment's chunk documents; a zero-member segment still gets one, so it is visible."""
    chunks = max(1, -(-len(customer_ids) // chunk_size))
    for chunk in range(chunks):
        members = customer_ids[chunk * chunk_size : (chunk + 1) * chunk_size]
        yield _chunk_document(segment_attributes, chunk, chunks, len(members), len(customer_ids), members)


def string_bytes(strings: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(each string's start offset and the end's, the bytes of them all) of a non-empty string array
    or slice of one: numpy views of Arrow's buffers, nothing copied."""
    offset_type = np.int64 if pa.types.is_large_string(strings.type) else np.int32
    _, offsets_buffer, data = strings.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=offset_type)[strings.offset : strings.offset + len(strings) + 1]
    if data is None:  # every string empty
        return offsets, np.empty(0, dtype=np.uint8)
    return offsets, np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]]


def _any_needs_escaping(strings: pa.Array) -> bool:
    """Whether any of these strings (a slice of a string array) holds a byte JSON must escape: a
    control character, '"' or '\\'. Valid ids hold none. Three vectorized comparisons
    over the bytes: a tenth of the CPU of a 256-entry table lookup per byte (measured)."""
    _, text = string_bytes(strings)
    return bool((text < 0x20).any() or (text == ord('"')).any() or (text == ord("\\")).any())


def chunk_documents_from_arrow(
    segment_attributes: dict[str, Any], customer_ids: pa.StringArray, chunk_size: int
) -> Iterator[dict[str, Any]]:
    """`chunk_documents` for ids still in Arrow: each chunk's id list is joined into its JSON text in
    Arrow's C++ (an `orjson.Fragment`), so no Python string is made per id. Serialize with orjson."""
    count = len(customer_ids)
    if count and _any_needs_escaping(customer_ids):
        yield from chunk_documents(segment_attributes, customer_ids.to_pylist(), chunk_size)
        return
    chunks = max(1, -(-count // chunk_size))
    offsets = pa.array([min(c * chunk_size, count) for c in range(chunks + 1)], pa.int32())
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, customer_ids), '","').to_pylist()
    for chunk, text in enumerate(joined):
        members = min(chunk_size, count - chunk * chunk_size)
        ids = orjson.Fragment(f'["{text}"]' if members else "[]")
        yield _chunk_document(segment_attributes, chunk, chunks, members, count, ids)


def _segments_query(segment_ids: list[str]) -> dict[str, Any]:
    """A search body (as `helpers.scan` takes it) for these segments' chunk documents."""
    return {"query": {"bool": {"filter": [{"terms": {"segment_id": segment_ids}}]}}}


@dataclass(frozen=True)
class SegmentIndex:
    """One index of a segment type, as its `_meta` describes it."""

    name: str
    meta: dict[str, Any]
    created_ms: int

    @property
    def partition_key(self) -> str:
        return str(self.meta.get("partition_key", ""))

    @property
    def verified(self) -> bool:
        return bool(self.meta.get("verified"))

    @property
    def publication_order(self) -> tuple[str, int]:
        """Newer calculations sort later: by partition, then by when the index was made."""
        return (self.partition_key, self.created_ms)


@dataclass(frozen=True)
class SegmentCount:
    members: int  # the sum of the chunk documents' `chunk_members`
    documents: int
    chunks: int  # how many chunk documents the segment's documents say it has


class SegmentIndexWriter:
    def __init__(
        self,
        client: Elasticsearch,
        prefix: str,
        replicas: str = "0-1",
        *,
        shards: int = 0,
        memberships_per_shard: int = DEFAULT_MEMBERSHIPS_PER_SHARD,
    ) -> None:
        self._es = client
        self._prefix = prefix
        # Once loaded: "0-1" gives a replica where a node can hold it (`replica_settings`).
        self._replicas = replica_settings(replicas)
        self._shards = shards  # 0: sized from the memberships (`shard_count`)
        self._memberships_per_shard = memberships_per_shard

    @property
    def client(self) -> Elasticsearch:
        return self._es

    @property
    def prefix(self) -> str:
        return self._prefix

    def create_index(self, index: str, meta: dict[str, Any], memberships: int = 0) -> int:
        """Creates the index of a calculation of `memberships`; answers its primary shards, which
        its `_meta` records too."""
        shards = shard_count(memberships, self._memberships_per_shard, self._shards)
        # Loading is fastest with no replicas and no refreshes; `finish_loading` restores both.
        self._es.indices.create(
            index=index,
            settings={"number_of_shards": shards, "number_of_replicas": 0, "refresh_interval": "-1"},
            mappings={**SEGMENT_INDEX_MAPPING, "_meta": {**meta, "shards": shards}},
        )
        log.info("created %s: %d primary shards for %d memberships", index, shards, memberships)
        return shards

    def load(self, index: str, documents: Iterable[dict[str, Any]], bulk: BulkSettings) -> LoadReport:
        pairs = ((chunk_id(d["segment_id"], d["chunk"]), d) for d in documents)
        return BulkLoader(self._es, bulk).load(index, pairs)

    def finish_loading(self, index: str, wait_seconds: int = 60) -> None:
        """Refreshes, then restores the refresh interval and replicas; waits for the replicas a while."""
        self._es.indices.refresh(index=index)
        self._es.indices.put_settings(
            index=index,
            settings={"refresh_interval": None, **self._replicas},
        )
        # Primaries answer already; a replica still copying only lowers redundancy, so no failure.
        self._es.options(ignore_status=408).cluster.health(
            index=index, wait_for_status="green", timeout=f"{wait_seconds}s"
        )

    def compact(self, index: str) -> str:
        """Starts merging a loaded index into one Lucene segment; answers the merge task's id.

        A served index never changes, and a lookup seeks each customer id once per Lucene segment:
        one segment per index made batches of 100 a fifth cheaper for Elasticsearch (bench_api).
        Publishing does not wait for it: readers are served from the index while it merges."""
        return str(self._es.indices.forcemerge(index=index, max_num_segments=1, wait_for_completion=False)["task"])

    def store_bytes(self, index: str) -> int:
        stats = self._es.indices.stats(index=index, metric="store")
        return int(stats["indices"][index]["primaries"]["store"]["size_in_bytes"])

    def segment_counts(self, index: str) -> dict[str, SegmentCount]:
        """segment_id -> what the index holds of it, read back with a composite aggregation."""
        found: dict[str, SegmentCount] = {}
        after: dict[str, Any] | None = None
        while True:
            composite: dict[str, Any] = {"size": 1000, "sources": [{"segment_id": {"terms": {"field": "segment_id"}}}]}
            if after:
                composite["after"] = after
            response = self._es.search(
                index=index,
                size=0,
                aggs={
                    "segments": {
                        "composite": composite,
                        "aggs": {"members": {"sum": {"field": "chunk_members"}}, "chunks": {"max": {"field": "chunks"}}},
                    }
                },
            )
            buckets = response["aggregations"]["segments"]["buckets"]
            for bucket in buckets:
                found[bucket["key"]["segment_id"]] = SegmentCount(
                    int(bucket["members"]["value"]), int(bucket["doc_count"]), int(bucket["chunks"]["value"] or 0)
                )
            after = response["aggregations"]["segments"].get("after_key")
            if not buckets or after is None:
                return found

    def stored_segment_documents(self, index: str, segment_ids: list[str]) -> Iterator[dict[str, Any]]:
        """The chunk documents of these segments in `index`, `customer_ids` read back from stored fields."""
        for hit in helpers.scan(
            self._es,
            index=index,
            query=_segments_query(segment_ids),
            stored_fields=["customer_ids"],
            _source=True,
            size=50,
        ):
            yield {**hit["_source"], "customer_ids": hit.get("fields", {}).get("customer_ids", [])}

    def delete_segments(self, index: str, segment_ids: list[str]) -> None:
        # By id: `_delete_by_query` lives in the reindex module, which not every distribution ships.
        self._es.indices.refresh(index=index)
        hits = helpers.scan(self._es, index=index, query=_segments_query(segment_ids), _source=False)
        deletions = ({"_op_type": "delete", "_index": index, "_id": hit["_id"]} for hit in hits)
        helpers.bulk(self._es, deletions, refresh=True, ignore_status=(404,))

    def update_meta(self, index: str, **changes: Any) -> None:
        """Merges `changes` into the index's `_meta` (Elasticsearch replaces `_meta` as a whole)."""
        current = self._es.indices.get_mapping(index=index)[index]["mappings"].get("_meta", {})
        self._es.indices.put_mapping(index=index, meta={**current, **changes})

    def delete_index(self, index: str) -> None:
        self._es.options(ignore_status=404).indices.delete(index=index)

    def segment_index(self, index: str) -> SegmentIndex | None:
        try:
            found = self._es.indices.get(index=index)
        except NotFoundError:
            return None
        return next((i for i in self._describe(found) if i.name == index), None)

    def type_indices(self, segment_type: str) -> list[SegmentIndex]:
        """Every index of the type, oldest calculation first."""
        found = self._es.indices.get(index=type_index_pattern(self._prefix, segment_type), allow_no_indices=True)
        indices = [i for i in self._describe(found) if i.meta.get("segment_type") == segment_type]
        return sorted(indices, key=lambda i: i.publication_order)

    @staticmethod
    def _describe(found: Any) -> list[SegmentIndex]:
        return [
            SegmentIndex(
                name=name,
                meta=body["mappings"].get("_meta", {}),
                created_ms=int(body["settings"]["index"]["creation_date"]),
            )
            for name, body in found.items()
        ]

    def served_indices(self, segment_type: str) -> list[str]:
        alias = type_alias(self._prefix, segment_type)
        if not self._es.indices.exists_alias(name=alias):
            return []
        return sorted(self._es.indices.get_alias(name=alias).keys())

    def highest_served_generation(self) -> int:
        """The highest alias generation recorded on any index behind the read alias."""
        alias = read_alias(self._prefix)
        if not self._es.indices.exists_alias(name=alias):
            return 0
        mappings = self._es.indices.get_mapping(index=alias)
        return max((int(m["mappings"].get("_meta", {}).get("generation", 0)) for m in mappings.values()), default=0)

    def switch_alias(self, segment_type: str, new_index: str) -> list[str]:
        """Moves the type's alias and the read alias to `new_index`; answers what they left."""
        previous = self.served_indices(segment_type)
        self._move_aliases(segment_type, previous, [new_index])
        return previous

    def undo_switch(self, segment_type: str, new_index: str, previous: list[str]) -> None:
        """Puts the aliases back where `switch_alias` found them (`previous`)."""
        self._move_aliases(segment_type, [new_index], previous)

    def _move_aliases(self, segment_type: str, leave: list[str], serve: list[str]) -> None:
        """The type's alias and the read alias off `leave` and onto `serve`, in one atomic request."""
        aliases = (type_alias(self._prefix, segment_type), read_alias(self._prefix))
        actions: list[dict[str, Any]] = [
            {"remove": {"index": old, "alias": alias}} for old in leave if old not in serve for alias in aliases
        ]
        actions += [{"add": {"index": new, "alias": alias}} for new in serve for alias in aliases]
        if actions:
            self._es.indices.update_aliases(actions=actions)
