"""Reads through the read alias (or, for exports, one concrete index): every query in filter
context, only the fields it needs, no hit counting, each inside the `SearchGuard`'s budget."""

from __future__ import annotations

from typing import Any

from elasticsearch import AsyncElasticsearch, NotFoundError

from resources.index_names import read_alias
from resources.search_guard import SearchGuard

# What a lookup answer shows of a segment (SPEC 7); nothing else is fetched.
SEGMENT_FIELDS = ["segment_id", "name", "segment_type", "store_id", "category", "city", "country", "labels", "calculated_at"]
SUMMARY_FIELDS = ["segment_id", "calculated_at", "member_count", "chunks"]
# Elasticsearch's default `index.max_result_window`: one page of hits at most.
MAX_HITS = 10_000
CUSTOMERS_PER_BUDGET = 250


class IndexGone(LookupError):
    """The concrete index an export cursor points at no longer exists."""


def _segment(source: dict[str, Any]) -> dict[str, Any]:
    segment = {field: source.get(field) for field in SEGMENT_FIELDS}
    segment["labels"] = segment["labels"] or {}
    return segment


class SegmentReader:
    def __init__(self, client: AsyncElasticsearch, prefix: str, guard: SearchGuard) -> None:
        self._es = client
        self._alias = read_alias(prefix)
        self._guard = guard

    async def segments_of(self, customer_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """customer_id -> every segment the customer is in, sorted by segment_id, for each id given.

        One request for the whole list: each id is a named `term` clause, so each hit says which
        customers it holds (`matched_queries`); `customer_ids` itself is never read back.
        A customer is in at most one chunk document of a segment, so hits are segments.
        """
        found: dict[str, dict[str, dict[str, Any]]] = {c: {} for c in customer_ids}
        await self._collect(list(found), found)
        return {c: [segments[s] for s in sorted(segments)] for c, segments in found.items()}

    async def _collect(self, customer_ids: list[str], found: dict[str, dict[str, dict[str, Any]]]) -> None:
        if len(customer_ids) == 1:
            query: dict[str, Any] = {"bool": {"filter": [{"term": {"customer_ids": customer_ids[0]}}]}}
        else:
            named = [{"term": {"customer_ids": {"value": c, "_name": str(i)}}} for i, c in enumerate(customer_ids)]
            query = {"bool": {"filter": [{"bool": {"should": named, "minimum_should_match": 1}}]}}
        # A batch does work in proportion to its ids: one budget per `CUSTOMERS_PER_BUDGET` of them.
        budget = self._guard.budget_seconds * -(-len(customer_ids) // CUSTOMERS_PER_BUDGET)
        client = self._es if budget == self._guard.budget_seconds else self._es.options(request_timeout=budget)
        response = await self._guard.run(
            "customer_segments",
            lambda: client.search(
                index=self._alias,
                query=query,
                source=SEGMENT_FIELDS,
                size=MAX_HITS,
                track_total_hits=False,
                ignore_unavailable=True,
                allow_no_indices=True,
            ),
            budget_seconds=budget,
        )
        hits = response["hits"]["hits"]
        if len(hits) >= MAX_HITS and len(customer_ids) > 1:
            # More segments than one page holds: ask again in halves.
            middle = len(customer_ids) // 2
            await self._collect(customer_ids[:middle], found)
            await self._collect(customer_ids[middle:], found)
            return
        for hit in hits:
            segment = _segment(hit["_source"])
            holders = [customer_ids[int(i)] for i in hit.get("matched_queries", ())] if len(customer_ids) > 1 else customer_ids
            for customer_id in holders:
                found[customer_id][segment["segment_id"]] = segment

    async def segment_summary(self, segment_id: str) -> dict[str, Any] | None:
        """The served calculation of a segment: member_count, calculated_at, chunks and the concrete index."""
        response = await self._guard.run(
            "segment_summary",
            lambda: self._es.search(
                index=self._alias,
                query={"bool": {"filter": [{"term": {"segment_id": segment_id}}]}},
                source=SUMMARY_FIELDS,
                size=1,
                track_total_hits=False,
                ignore_unavailable=True,
                allow_no_indices=True,
            ),
        )
        hits = response["hits"]["hits"]
        if not hits:
            return None
        return {**{f: hits[0]["_source"].get(f) for f in SUMMARY_FIELDS}, "index": hits[0]["_index"]}

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
