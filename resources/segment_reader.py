"""Lookups through the read alias: which segments hold a customer, as of the last switch."""

from __future__ import annotations

from typing import Any

from elasticsearch import AsyncElasticsearch

from resources.index_names import read_alias

# What a lookup answer shows of a segment (SPEC 7); nothing else is fetched.
SEGMENT_FIELDS = ["segment_id", "name", "segment_type", "store_id", "category", "city", "country", "labels", "calculated_at"]
MAX_SEGMENTS_PER_CUSTOMER = 10_000


class SegmentReader:
    def __init__(self, client: AsyncElasticsearch, prefix: str) -> None:
        self._es = client
        self._alias = read_alias(prefix)

    async def customer_segments(self, customer_id: str) -> list[dict[str, Any]]:
        """Every segment the customer is in, sorted by segment_id.

        A customer is in at most one chunk document of a segment, so hits are segments.
        """
        response = await self._es.search(
            index=self._alias,
            query={"bool": {"filter": [{"term": {"customer_ids": customer_id}}]}},
            source=SEGMENT_FIELDS,
            size=MAX_SEGMENTS_PER_CUSTOMER,
            track_total_hits=False,
            sort=["segment_id"],
            ignore_unavailable=True,
            allow_no_indices=True,
        )
        return [{field: hit["_source"].get(field) for field in SEGMENT_FIELDS} for hit in response["hits"]["hits"]]
