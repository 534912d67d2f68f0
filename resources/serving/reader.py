"""Reads through the read alias (or, for exports, one concrete index): every query in filter
context, only the fields it needs, no hit counting, each inside the `SearchGuard`'s budget.

A chunk document's stored fields hold thousands of customer ids (5,000 by default), and Lucene
decompresses a document's stored fields together: reading even a small `_source` of a hit costs as much as
reading its ids (~50x slower lookups, measured). So lookups read no stored field at all
(`stored_fields: _none_`, the segment id from doc values), and take each segment's attributes
from the catalog of the index that served the hit: its chunk-0 documents' `_source`, read once per
index and process. An index never changes once served, so a catalog is never stale.

A catalog is segment id -> that segment's answer as JSON bytes, nothing else: at 100K segments a
type's catalog as dicts took ~490 MB per worker where its bytes take ~33 MB (bench/bench_segments.py).
A process keeps the catalogs it read last, up to a count and a size (`_keep`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

import orjson
from elasticsearch import ApiError, AsyncElasticsearch, NotFoundError

from resources.names import read_alias, type_alias
from resources.serving.search_guard import SearchGuard
from resources.targeting import SEGMENT_ANSWER_FIELDS

CATALOG_FIELDS = list(SEGMENT_ANSWER_FIELDS)
# What a segment's summary reads from its hit, beside its catalog entry: doc values, no stored field.
SUMMARY_FIELDS = ["member_count", "chunks"]
# Elasticsearch's default `index.max_result_window`: one page of hits at most.
MAX_HITS = 10_000
CUSTOMERS_PER_BUDGET = 250
# Chunk documents per catalog page. Reading one's `_source` decompresses its customer ids too: a
# page of 10,000 took 0.6-0.9 s of a 2 s budget (100K segments, 37M memberships); 2,000 leave room.
CATALOG_PAGE = 2_000
CATALOGS_KEPT = 32  # indices: a few generations of every segment type
# And at most this many bytes of answers: at 100K segments a catalog is ~25 MB of them.
CATALOG_BYTES_KEPT = 256 << 20
NO_STORED_FIELDS = ["_none_"]
# What a lookup reads of its answer (whether a shard failed, and of each hit what says which
# customers hold which segment); the rest (`took`, `_score`, ...) is not even sent.
HIT_FIELDS = ["_shards.failed", "hits.hits._index", "hits.hits.fields", "hits.hits.matched_queries"]
PAGED_HIT_FIELDS = [*HIT_FIELDS, "hits.hits.sort", "pit_id"]
AGGREGATED_FIELDS = [
    "_shards.failed",
    "aggregations.indices.sum_other_doc_count",
    "aggregations.indices.buckets.key",
    "aggregations.indices.buckets.segments.sum_other_doc_count",
    "aggregations.indices.buckets.segments.buckets.key",
]
INDICES_PER_ANSWER = 1_000  # indices behind the read alias: one per served type
# Below `search.max_buckets` (65,536) for up to 6 served types; past it, the hits are paged.
SEGMENTS_PER_BUCKET = MAX_HITS
PIT_KEEP_ALIVE = "1m"  # between two parts of one batch: far longer than the budget of each


class IndexGone(LookupError):
    """The concrete index an export cursor points at no longer exists."""


class _PointInTime:
    """An open point in time. Any search in it may answer with a new id (when shards move, on a
    cluster of several nodes), and the latest one is what the next search, and the close, use."""

    __slots__ = ("id",)

    def __init__(self, pit_id: str) -> None:
        self.id = pit_id


Catalog = dict[str, bytes]  # segment_id -> its answer as JSON


def _catalog_entry(source: dict[str, Any]) -> bytes:
    segment = {field: source.get(field) for field in SEGMENT_ANSWER_FIELDS}
    segment["labels"] = segment["labels"] or {}
    # Serialized once per index and process: a lookup answer joins these bytes, never re-encodes them.
    # Copied to its own size: orjson's bytes keep the 4 KB buffer they were written in (tracemalloc:
    # 4,097 bytes held for a 226-byte answer), 400 MB for a catalog of 100K segments.
    return memoryview(orjson.dumps(segment)).tobytes()


def _hold(customer_ids: list[str], hits: list[dict[str, Any]], held: dict[str, dict[str, list[str]]]) -> None:
    """Adds each hit's segment to the customers it holds: all of them (one customer asked), or
    those its `matched_queries` name."""
    if len(customer_ids) == 1:
        by_index = held[customer_ids[0]]
        for hit in hits:
            by_index.setdefault(hit["_index"], []).append(hit["fields"]["segment_id"][0])
        return
    named = dict(zip(map(str, range(len(customer_ids))), customer_ids))  # a clause's name -> its customer
    for hit in hits:
        index, segment_id = hit["_index"], hit["fields"]["segment_id"][0]
        for name in hit.get("matched_queries", ()):
            held[named[name]].setdefault(index, []).append(segment_id)


class SegmentReader:
    def __init__(self, client: AsyncElasticsearch, prefix: str, guard: SearchGuard, *, catalog_budget_seconds: float) -> None:
        self._es = client
        self._prefix = prefix
        self._alias = read_alias(prefix)
        self._guard = guard
        self._catalog_budget = catalog_budget_seconds
        self._catalogs: OrderedDict[str, Catalog] = OrderedDict()
        self._catalog_bytes: dict[str, int] = {}
        self._loading: dict[str, asyncio.Future[Catalog]] = {}

    async def catalog(self, index: str) -> Catalog:
        """segment_id -> its answer as JSON, of one index; loaded once per process."""
        cached = self._catalogs.get(index)
        if cached is not None:
            return cached
        pending = self._loading.get(index)
        if pending is None:  # one load per index, however many requests wait for it
            pending = self._loading[index] = asyncio.ensure_future(self._load_catalog(index))
            pending.add_done_callback(lambda _: self._loading.pop(index, None))
        return await asyncio.shield(pending)

    async def _load_catalog(self, index: str) -> Catalog:
        catalog: Catalog = {}
        after: list[Any] | None = None
        client = self._es.options(request_timeout=self._catalog_budget)
        while True:
            page = await self._guard.run(
                "segment_catalog",
                lambda: client.search(
                    index=index,
                    query={"bool": {"filter": [{"term": {"chunk": 0}}]}},
                    source=CATALOG_FIELDS,
                    size=CATALOG_PAGE,
                    sort=["segment_id"],
                    search_after=after,
                    track_total_hits=False,
                ),
                budget_seconds=self._catalog_budget,
            )
            hits = page["hits"]["hits"]
            for hit in hits:
                catalog[hit["_source"]["segment_id"]] = _catalog_entry(hit["_source"])
            if len(hits) < CATALOG_PAGE:
                break
            after = hits[-1]["sort"]
        self._keep(index, catalog)
        return catalog

    def _keep(self, index: str, catalog: Catalog) -> None:
        """Holds a catalog, letting the ones held longest go past `CATALOGS_KEPT` or
        `CATALOG_BYTES_KEPT` (never the one just kept): retired indices are never asked again."""
        self._catalogs[index] = catalog
        self._catalog_bytes[index] = sum(map(len, catalog.values()))
        while len(self._catalogs) > 1 and (
            len(self._catalogs) > CATALOGS_KEPT or sum(self._catalog_bytes.values()) > CATALOG_BYTES_KEPT
        ):
            oldest, _ = self._catalogs.popitem(last=False)
            del self._catalog_bytes[oldest]

    def loaded_catalog(self, index: str) -> Catalog | None:
        """The catalog of an index if this process holds it already (no I/O)."""
        return self._catalogs.get(index)

    def adopt_catalog(self, index: str, serialized: bytes) -> Catalog:
        """Takes a catalog that `serialized_catalog` wrote (another process read it from the index)."""
        catalog: Catalog = {}
        for line in serialized.split(b"\n") if serialized else ():
            segment_id, _, answer = line.partition(b"\t")
            catalog[segment_id.decode()] = answer
        self._keep(index, catalog)
        return catalog

    @staticmethod
    def serialized_catalog(catalog: Catalog) -> bytes:
        """One line per segment, its id and its answer: split, not parsed, by `adopt_catalog`. Neither
        holds a tab or a newline (ids follow `ID_PATTERN`; orjson escapes both inside strings)."""
        return b"\n".join(segment_id.encode() + b"\t" + answer for segment_id, answer in catalog.items())

    async def memberships_of(
        self, customer_ids: list[str], segment_types: tuple[str, ...] = ()
    ) -> dict[str, dict[str, list[str]]]:
        """customer_id -> {index: the ids of the segments it holds the customer in}, for each id
        given, in every served type (through the read alias) or in `segment_types` (their aliases).

        One request for the whole list: a `terms` filter finds the hits, and each id is also a
        named `term` clause, so each hit says which customers it holds (`matched_queries`);
        `customer_ids` itself is never read back. A customer is in at most one chunk document of a
        segment, so hits are segments. Only hits that fill more than a page take more requests.
        """
        held: dict[str, dict[str, list[str]]] = {c: {} for c in customer_ids}
        target = ",".join(type_alias(self._prefix, t) for t in segment_types) if segment_types else self._alias
        if len(held) == 1 and await self._aggregate_one(target, customer_ids[0], held):
            return held
        await self._collect(target, list(held), held)
        return held  # in hit order: an answer is sorted once, when it is joined (resources/serving/lookups.py)

    async def _aggregate_one(self, target: str, customer_id: str, held: dict[str, dict[str, list[str]]]) -> bool:
        """One customer's segments as the keys of a terms aggregation (by index, then segment id),
        not as hits: for a customer in 1,000+ segments Elasticsearch answered 5x fewer bytes and
        its p99 fell from ~80 ms to ~10 ms (bench/bench_segments.py). False, holding nothing, when
        an index holds the customer in more segments than a bucket lists, or all of them in more
        than the cluster's `search.max_buckets`: the hits are paged then."""
        try:
            response = await self._aggregation(target, customer_id)
        except ApiError as error:  # more buckets in all than the cluster's `search.max_buckets`
            if "too_many_buckets" not in str(error.body):  # the reason is in the body, under root causes
                raise
            return False
        indices = response.get("aggregations", {}).get("indices", {})
        buckets = indices.get("buckets", [])
        if indices.get("sum_other_doc_count") or any(b["segments"].get("sum_other_doc_count") for b in buckets):
            return False
        held[customer_id] = {b["key"]: [s["key"] for s in b["segments"]["buckets"]] for b in buckets}
        return True

    async def _aggregation(self, target: str, customer_id: str) -> Any:
        return await self._guard.run(
            "customer_segments",
            lambda: self._es.search(
                index=target,
                query={"bool": {"filter": [{"term": {"customer_ids": customer_id}}]}},
                size=0,
                track_total_hits=False,
                aggs={
                    "indices": {
                        "terms": {"field": "_index", "size": INDICES_PER_ANSWER},
                        "aggs": {"segments": {"terms": {"field": "segment_id", "size": SEGMENTS_PER_BUCKET}}},
                    }
                },
                ignore_unavailable=True,
                allow_no_indices=True,
                filter_path=AGGREGATED_FIELDS,
            ),
        )

    async def _collect(
        self, target: str, customer_ids: list[str], held: dict[str, dict[str, list[str]]], pit: _PointInTime | None = None
    ) -> None:
        hits = await self._search(target, customer_ids, pit)
        if len(hits) < MAX_HITS:
            _hold(customer_ids, hits, held)
        elif pit:
            await self._collect_beyond_a_page(target, customer_ids, held, pit, first_page=hits)
        else:
            # More than one page: all of what follows reads one point in time, so that an alias
            # switch meanwhile cannot mix two calculations in one answer (the indices it holds are
            # kept for it, even if retention deletes them).
            async with self._point_in_time(target) as opened:
                await self._collect_beyond_a_page(target, customer_ids, held, opened)

    async def _collect_beyond_a_page(
        self,
        target: str,
        customer_ids: list[str],
        held: dict[str, dict[str, list[str]]],
        pit: _PointInTime,
        first_page: list[dict[str, Any]] | None = None,
    ) -> None:
        """More hits than one page holds: a batch is asked again in halves, one customer page by
        page (from `first_page` when that was read in this point in time already)."""
        if len(customer_ids) > 1:
            middle = len(customer_ids) // 2
            await self._collect(target, customer_ids[:middle], held, pit)
            await self._collect(target, customer_ids[middle:], held, pit)
            return
        hits = first_page if first_page is not None else await self._search(target, customer_ids, pit)
        _hold(customer_ids, hits, held)
        while len(hits) >= MAX_HITS:
            hits = await self._search(target, customer_ids, pit, hits[-1]["sort"])
            _hold(customer_ids, hits, held)

    async def _search(
        self, target: str, customer_ids: list[str], pit: _PointInTime | None, after: list[Any] | None = None
    ) -> list[dict[str, Any]]:
        """One page of the hits of these customers, through the aliases `target` names or in a point in time."""
        if len(customer_ids) == 1:
            query: dict[str, Any] = {"bool": {"filter": [{"term": {"customer_ids": customer_ids[0]}}]}}
        else:
            named = [{"term": {"customer_ids": {"value": c, "_name": str(i)}}} for i, c in enumerate(customer_ids)]
            # The named clauses are optional beside the filter, so Elasticsearch looks them up only
            # to name each hit's customers. As the clauses that match, every id was looked up twice:
            # 15% more Elasticsearch CPU and 60% more garbage per batch of 100 (measured).
            query = {"constant_score": {"filter": {"bool": {"filter": [{"terms": {"customer_ids": customer_ids}}], "should": named}}}}
        # A batch does work in proportion to its ids: one budget per `CUSTOMERS_PER_BUDGET` of them.
        budget = self._guard.budget_seconds * -(-len(customer_ids) // CUSTOMERS_PER_BUDGET)
        client = self._es if budget == self._guard.budget_seconds else self._es.options(request_timeout=budget)
        where: dict[str, Any] = (
            # in a point in time, pages follow the cheapest order there is
            {"pit": {"id": pit.id, "keep_alive": PIT_KEEP_ALIVE}, "sort": ["_shard_doc"], "search_after": after}
            if pit
            else {"index": target, "ignore_unavailable": True, "allow_no_indices": True}
        )
        response = await self._guard.run(
            "customer_segments",
            lambda: client.search(
                **where,
                query=query,
                stored_fields=NO_STORED_FIELDS,
                docvalue_fields=["segment_id"],
                size=MAX_HITS,
                track_total_hits=False,
                filter_path=PAGED_HIT_FIELDS if pit else HIT_FIELDS,
            ),
            budget_seconds=budget,
        )
        if pit:
            pit.id = response.get("pit_id", pit.id)
        return response.get("hits", {}).get("hits", [])  # no hits: filter_path leaves nothing

    @contextlib.asynccontextmanager
    async def _point_in_time(self, target: str) -> AsyncIterator[_PointInTime]:
        opened = await self._guard.run(
            "open_point_in_time",
            lambda: self._es.open_point_in_time(
                index=target, keep_alive=PIT_KEEP_ALIVE, ignore_unavailable=True, allow_partial_search_results=False
            ),
        )
        point = _PointInTime(str(opened["id"]))
        try:
            yield point
        finally:
            with contextlib.suppress(Exception):  # it expires by itself after PIT_KEEP_ALIVE
                await self._es.close_point_in_time(id=point.id)

    async def segment_summary(self, segment_id: str) -> dict[str, Any] | None:
        """The served calculation of a segment: member_count, calculated_at, chunks and the concrete index."""
        response = await self._guard.run(
            "segment_summary",
            lambda: self._es.search(
                index=self._alias,
                query={"bool": {"filter": [{"term": {"segment_id": segment_id}}]}},
                stored_fields=NO_STORED_FIELDS,
                docvalue_fields=SUMMARY_FIELDS,
                size=1,
                track_total_hits=False,
                ignore_unavailable=True,
                allow_no_indices=True,
            ),
        )
        hits = response["hits"]["hits"]
        if not hits:
            return None
        index, fields = hits[0]["_index"], hits[0]["fields"]
        answer = (await self.catalog(index)).get(segment_id)
        if answer is None:
            return None
        return {
            "segment_id": segment_id,
            "calculated_at": orjson.loads(answer)["calculated_at"],
            "member_count": fields["member_count"][0],
            "chunks": fields["chunks"][0],
            "index": index,
        }

    async def holds(self, index: str, segment_id: str, customer_id: str) -> bool:
        """Whether this one index (one calculation) has the customer in the segment."""
        response = await self._guard.run(
            "membership",
            lambda: self._es.search(
                index=index,
                query={"bool": {"filter": [{"term": {"segment_id": segment_id}}, {"term": {"customer_ids": customer_id}}]}},
                stored_fields=NO_STORED_FIELDS,
                size=0,
                terminate_after=1,
                track_total_hits=True,
                ignore_unavailable=True,
            ),
        )
        return int(response["hits"]["total"]["value"]) > 0

    async def chunk_members(self, index: str, segment_id: str, chunk: int, budget_seconds: float) -> tuple[list[str], int] | None:
        """(sorted customer ids, number of chunks) of one chunk document, read from its stored field."""
        try:
            response = await self._guard.run(
                "chunk_members",
                lambda: self._es.options(request_timeout=budget_seconds).search(
                    index=index,
                    query={"bool": {"filter": [{"term": {"segment_id": segment_id}}, {"term": {"chunk": chunk}}]}},
                    stored_fields=["customer_ids"],
                    source=["chunks"],
                    size=1,
                    track_total_hits=False,
                ),
                budget_seconds=budget_seconds,
            )
        except NotFoundError as error:
            raise IndexGone(index) from error
        hits = response["hits"]["hits"]
        if not hits:
            return None
        members = hits[0].get("fields", {}).get("customer_ids", [])
        members.sort()  # stored in order already; sorting sorted data is linear, and makes the order a guarantee
        return members, int(hits[0]["_source"]["chunks"])
