"""Lookups with the cache in front of Elasticsearch (cache-aside, keyed by alias generation).

A customer's whole segment list is cached once, empty lists too (most customers are in few
segments or none), and every filter is applied in the process. With Elasticsearch unavailable,
whatever the cache holds for the current generation is still answered; the rest raises
`SearchUnavailable`.
"""

from __future__ import annotations

from typing import Any

import orjson

from resources.lookup_cache import LookupCache
from resources.segment_reader import SegmentReader

CUSTOMER = "c"
SEGMENT = "s"


class SegmentLookups:
    def __init__(self, reader: SegmentReader, cache: LookupCache) -> None:
        self.reader = reader
        self.cache = cache

    async def customer_segments(self, customer_id: str) -> list[dict[str, Any]]:
        return orjson.loads((await self.serialized_segments([customer_id]))[customer_id])

    async def serialized_segments(self, customer_ids: list[str]) -> dict[str, bytes]:
        """customer_id -> its sorted segment list as JSON, for each distinct id given: MGET, then one
        search for the misses. As the cache holds them: an answer without filters embeds them as they are."""
        generation = await self.cache.generation()
        found: dict[str, bytes] = {}
        if generation is not None:
            found = await self.cache.get_many(generation, CUSTOMER, customer_ids)
        misses = [c for c in customer_ids if c not in found]
        if misses:
            fetched = {c: orjson.dumps(s) for c, s in (await self.reader.segments_of(misses)).items()}
            if generation is not None:
                await self.cache.put_many(generation, CUSTOMER, fetched)
            found.update(fetched)
        return found

    async def segment_summary(self, segment_id: str) -> dict[str, Any] | None:
        """member_count, calculated_at, chunks and index of the served calculation, or None."""
        generation = await self.cache.generation()
        if generation is not None:
            cached = await self.cache.get_many(generation, SEGMENT, [segment_id])
            if segment_id in cached:
                return orjson.loads(cached[segment_id])
        summary = await self.reader.segment_summary(segment_id)  # None (not served) is cached too
        if generation is not None:
            await self.cache.put_many(generation, SEGMENT, {segment_id: orjson.dumps(summary)})
        return summary
