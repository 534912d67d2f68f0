"""Lookups with the cache in front of Elasticsearch (cache-aside, keyed by alias generation).

What is cached of a customer is compact: the ids of its segments, by the index that holds them
(`{index: [segment_id, ...]}`, `{}` for none; most customers are in few segments or none). The
answer is made from those ids and the catalog of each index (resources/serving/reader.py), the
segments' attributes serialized once: an entry takes about a sixth of the Redis memory of the
answer it makes (measured in bench_api), so the same memory holds six times the customers, and a
batch's writes to it are small. Every filter is applied in the process, so one entry serves them all.

Catalogs are cached too, so that with Elasticsearch unavailable a process that has never read
an index can still answer from the cache; so are segment summaries and the membership checks
that a customer's list cannot answer. Whatever the cache holds for the current generation is
answered; the rest raises `SearchUnavailable`.

In front of Redis, each process keeps the answers (and segment summaries) it made last in a
bounded near cache, keyed by generation like Redis: a repeated lookup, the commonest, is then
neither read from Redis nor joined again. Catalogs stay out of it: the reader keeps the ones it
holds, parsed, in an LRU of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from resources.names import CacheKind
from resources.serving.cache import LookupCache, NearCache
from resources.serving.metrics import CACHE_LOOKUPS
from resources.serving.reader import SegmentReader

MEMBERSHIPS, SEGMENT, CATALOG, HOLDS = CacheKind.MEMBERSHIPS, CacheKind.SEGMENT, CacheKind.CATALOG, CacheKind.HOLDS

Catalog = dict[str, dict[str, Any]]


class SegmentLookups:
    def __init__(self, reader: SegmentReader, cache: LookupCache, *, near_entries: int = 0) -> None:
        self.reader = reader
        self.cache = cache
        self._near = NearCache(near_entries)  # f"{generation}:{kind}:{item}" -> an answer's JSON
        self._catalogs_kept: dict[tuple[int, str], float] = {}  # (generation, index) -> next rewrite due

    async def customer_segments(self, customer_id: str) -> list[dict[str, Any]]:
        return orjson.loads((await self.serialized_segments([customer_id]))[customer_id])

    async def serialized_segments(self, customer_ids: list[str]) -> dict[str, bytes]:
        """customer_id -> its segment list as JSON, sorted by segment id, for each distinct id given:
        MGET, then one search for the misses. An answer without filters embeds these bytes as they are."""
        generation = await self.cache.generation()
        if generation is None:  # Redis cannot say which calculation is served: no cache at all
            memberships = await self.reader.memberships_of(customer_ids)
            return await self._answer(None, memberships)
        answers = self._near_get(generation, MEMBERSHIPS, customer_ids)
        rest = [c for c in customer_ids if c not in answers]
        if not rest:
            return answers
        cached = await self.cache.get_many(generation, MEMBERSHIPS, rest)
        memberships = {c: orjson.loads(entry) for c, entry in cached.items()}
        misses = [c for c in rest if c not in cached]
        if misses:
            fetched = await self.reader.memberships_of(misses)
            await self.cache.write_behind(generation, MEMBERSHIPS, {c: orjson.dumps(m) for c, m in fetched.items()})
            memberships.update(fetched)
        joined = await self._answer(generation, memberships)
        if misses:
            await self._keep_catalogs(generation, {index for m in fetched.values() for index in m})
        self._near_put(generation, MEMBERSHIPS, joined)
        answers.update(joined)
        return answers

    def _near_get(self, generation: int, kind: str, items: list[str]) -> dict[str, bytes]:
        found = {}
        for item in items:
            if (value := self._near.get(f"{generation}:{kind}:{item}")) is not None:
                found[item] = value
        if found:
            CACHE_LOOKUPS.labels(kind, "hit_near").inc(len(found))
        return found

    def _near_put(self, generation: int, kind: str, values: dict[str, bytes]) -> None:
        for item, value in values.items():
            self._near.put(f"{generation}:{kind}:{item}", value)

    async def _answer(self, generation: int | None, memberships: dict[str, dict[str, list[str]]]) -> dict[str, bytes]:
        catalogs = await self._catalogs(generation, {index for held in memberships.values() for index in held})
        return {c: _segment_list(held, catalogs) for c, held in memberships.items()}

    async def _catalogs(self, generation: int | None, indices: set[str]) -> dict[str, Catalog]:
        """The catalog of each index: this process's, else the cache's, else read from the index."""
        catalogs: dict[str, Catalog] = {}
        for index in indices:
            if (catalog := self.reader.loaded_catalog(index)) is not None:
                catalogs[index] = catalog
        missing = [index for index in indices if index not in catalogs]
        if missing and generation is not None:
            for index, serialized in (await self.cache.get_many(generation, CATALOG, missing)).items():
                catalogs[index] = self.reader.adopt_catalog(index, serialized)
            missing = [index for index in missing if index not in catalogs]
        if missing:
            read = dict(zip(missing, await asyncio.gather(*(self.reader.catalog(index) for index in missing))))
            if generation is not None:
                await self._write_catalogs(generation, read)
            catalogs.update(read)
        return catalogs

    async def _keep_catalogs(self, generation: int, indices: set[str]) -> None:
        """Writes again, at most every quarter of the cache's TTL, the catalogs that new entries
        need, with half a TTL more than theirs: a process started while Elasticsearch is down
        can then join every entry in Redis. This process holds them in memory, and would otherwise
        let Redis's copy expire (or be evicted) while entries written later still point at it."""
        now = time.monotonic()
        due = [i for i in indices if self._catalogs_kept.get((generation, i), 0.0) <= now]
        catalogs = {i: c for i in due if (c := self.reader.loaded_catalog(i)) is not None}
        await self._write_catalogs(generation, catalogs)

    async def _write_catalogs(self, generation: int, catalogs: dict[str, Catalog]) -> None:
        if not catalogs:
            return
        ttl = self.cache.ttl_seconds
        if len(self._catalogs_kept) > 1_000:  # only the current generation's matter
            self._catalogs_kept = {k: v for k, v in self._catalogs_kept.items() if k[0] == generation}
        serialized = {i: self.reader.serialized_catalog(c) for i, c in catalogs.items()}
        # Waited for, once per index and quarter TTL: marked kept only once Redis has it. Half a TTL
        # more than the entries: rewritten every quarter, it outlives the last entry written.
        if await self.cache.put_many(generation, CATALOG, serialized, ttl_seconds=ttl + max(1, ttl // 2)):
            for index in catalogs:
                self._catalogs_kept[(generation, index)] = time.monotonic() + ttl / 4

    async def segment_summary(self, segment_id: str) -> dict[str, Any] | None:
        """member_count, calculated_at, chunks and index of the served calculation, or None."""

        async def read() -> bytes:
            return orjson.dumps(await self.reader.segment_summary(segment_id))  # None (not served) is cached too

        return orjson.loads(await self._cached(SEGMENT, segment_id, read))

    async def holds(self, index: str, segment_id: str, customer_id: str) -> bool:
        """Whether one index (one calculation) has the customer in the segment. An index never
        changes once served, so the answer is cached, "no" as well as "yes": most membership
        checks that get this far are of customers outside the segment."""

        async def read() -> bytes:
            return b"1" if await self.reader.holds(index, segment_id, customer_id) else b"0"

        return await self._cached(HOLDS, f"{index}:{segment_id}:{customer_id}", read) == b"1"

    async def _cached(self, kind: str, item: str, read: Callable[[], Awaitable[bytes]]) -> bytes:
        """One item's answer: from this process's near cache, else Redis, else `read` and written to both."""
        generation = await self.cache.generation()
        if generation is None:  # Redis cannot say which calculation is served: no cache at all
            return await read()
        cached = self._near_get(generation, kind, [item])
        if not cached:
            cached = await self.cache.get_many(generation, kind, [item])
            self._near_put(generation, kind, cached)
        if item in cached:
            return cached[item]
        answer = {item: await read()}
        await self.cache.write_behind(generation, kind, answer)
        self._near_put(generation, kind, answer)
        return answer[item]


def _segment_list(held: dict[str, list[str]], catalogs: dict[str, Catalog]) -> bytes:
    """The JSON list of a customer's segments, sorted by id, joined from the catalogs' serialized ones."""
    serialized = sorted(
        (segment_id, catalogs[index][segment_id]["json"])
        for index, segment_ids in held.items()
        for segment_id in segment_ids
        if segment_id in catalogs[index]
    )
    return b"[" + b",".join([segment for _, segment in serialized]) + b"]"
