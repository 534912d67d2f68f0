"""Lookups with the cache in front of Elasticsearch (cache-aside, valid per segment type).

What is cached of a customer is compact: the ids of its segments, per type, under the generation
that type's index was served at (resources/serving/served_indices.py; `{"17": ["seg-1"], "23": []}`).
The answer is made from those ids and the catalog of each index (resources/serving/reader.py), the
segments' attributes serialized once: an entry takes a fraction of the Redis memory of the answer
it makes, so the same memory holds several times the customers. Every filter is applied in the
process, so one entry serves them all. When a type switches, an entry is still answered for the
other types, and only the type that moved is read again, in a search that the misses of the same
moment share (resources/serving/coalescing.py): a switch is no cache flush.

Catalogs are cached too, so that with Elasticsearch unavailable a process that has never read
an index can still answer from the cache; so are segment summaries and the membership checks
that a customer's list cannot answer. Whatever the cache holds for the served indices is
answered; the rest raises `SearchUnavailable`.

In front of Redis, each process keeps the answers (and segment summaries) it made last in a
bounded near cache, keyed by the generation: a repeated lookup, the commonest, is then neither
read from Redis nor joined again. Catalogs stay out of it: the reader keeps the ones it holds
in an LRU of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from resources.names import CacheKind
from resources.serving.cache import LookupCache, NearCache
from resources.serving.coalescing import Coalescer
from resources.serving.metrics import CACHE_LOOKUPS
from resources.serving.reader import CUSTOMERS_PER_BUDGET, Catalog, SegmentReader
from resources.serving.served_indices import Held, ServedIndices

# How long a process may keep answering from the view before a switch while it gets ready for the new one.
WARM_SECONDS = 10.0

MEMBERSHIPS, SEGMENT, CATALOG, HOLDS = CacheKind.MEMBERSHIPS, CacheKind.SEGMENT, CacheKind.CATALOG, CacheKind.HOLDS


class SegmentLookups:
    def __init__(self, reader: SegmentReader, cache: LookupCache, *, near_entries: int = 0, near_bytes: int = 64 << 20) -> None:
        self.reader = reader
        self.cache = cache
        self._misses: Coalescer[Held] = Coalescer(reader.memberships_of, max_ids=CUSTOMERS_PER_BUDGET)
        self._near = NearCache(near_entries, near_bytes)  # f"{generation}:{kind}:{item}" -> an answer's JSON
        self._catalogs_kept: dict[str, float] = {}  # index -> next rewrite due
        self._adopted: ServedIndices | None = None  # the view lookups answer from (`_served`)
        self._warming: asyncio.Task[None] | None = None

    async def customer_segments(self, customer_id: str) -> list[dict[str, Any]]:
        return orjson.loads((await self.serialized_segments([customer_id]))[customer_id])

    async def serialized_segments(self, customer_ids: list[str]) -> dict[str, bytes]:
        """customer_id -> its segment list as JSON, sorted by segment id, for each distinct id given:
        MGET, then a search for what the entries lack. An answer without filters embeds these bytes as they are."""
        served = await self._served()
        if served is None or not served.types:  # Redis cannot say what is served: no cache at all
            return await self._answer(await self._misses.call(customer_ids))
        answers = self._near_get(served.generation, MEMBERSHIPS, customer_ids)
        rest = [c for c in customer_ids if c not in answers]
        if rest:
            # While a newer view is being got ready for, an alias may already serve what this view
            # does not: what is read then is answered, not cached under this view's generations.
            joined = await self._from_cache_or_search(served, rest, write=self._warming is None)
            self._near_put(served.generation, MEMBERSHIPS, joined)
            answers.update(joined)
        return answers

    async def _from_cache_or_search(
        self, served: ServedIndices, customer_ids: list[str], *, write: bool = True
    ) -> dict[str, bytes]:
        """The answers of these customers in the view `served`: their entries in Redis, and a search
        for what the entries lack (written back behind the answers, when `write`)."""
        cached = await self.cache.get_many(MEMBERSHIPS, customer_ids)
        held: dict[str, Held] = {}
        stale: dict[tuple[str, ...], list[str]] = {}  # the types to read -> the customers lacking them
        outdated = 0
        for customer in customer_ids:
            entry = orjson.loads(cached[customer]) if customer in cached else {}
            held[customer], lacking = served.held_in(entry)
            if lacking:
                stale.setdefault(() if len(lacking) == len(served.types) else lacking, []).append(customer)
                outdated += customer in cached
        if outdated:  # found in Redis (counted a hit there), yet a type switched since it was written
            CACHE_LOOKUPS.labels(MEMBERSHIPS, "stale").inc(outdated)
        if stale:
            await self._read_lacking(served, stale, held, write=write)
        return await self._answer(held)

    async def _served(self) -> ServedIndices | None:
        """What this process answers from: what Redis says is served, once this process is ready
        for it (`_warm`). Until then the view before the switch is kept (its indices are still
        there): no lookup waits for the new index's catalog, and the customers asked most are not
        all read again at once (bench_api (e))."""
        served = await self.cache.served()
        adopted = self._adopted
        if served is None or adopted is None or served.generation == adopted.generation:
            self._adopted = served
            return served
        if self._warming is None:
            self._warming = asyncio.get_running_loop().create_task(self._warm(adopted))
        return adopted

    async def _warm(self, adopted: ServedIndices) -> None:
        """Gets ready for the latest view, in the background, for at most `WARM_SECONDS` in all:
        the catalogs of its indices (one read took 0.1-0.3 s under load, and every lookup of the
        type waited for it), then the answers of the customers in the near cache, read in batches
        and put there under the new generation. A switch meanwhile is prepared for in turn. Then
        the view is adopted, ready or not."""
        target, staged = adopted, {}
        try:
            async with asyncio.timeout(WARM_SECONDS):
                while (served := await self.cache.served()) is not None and served.generation != target.generation:
                    target, staged = served, {}
                    await self._prepare(adopted, served, staged)
        except Exception:  # noqa: BLE001 - Elasticsearch slow or unavailable: lookups meet it themselves
            pass
        finally:
            self._near_put(target.generation, MEMBERSHIPS, staged)
            self._adopted = target
            self._warming = None

    async def _prepare(self, adopted: ServedIndices, served: ServedIndices, staged: dict[str, bytes]) -> None:
        await self._catalogs({s.index for s in served.types.values()})
        if served.types.keys() != adopted.types.keys():  # a type came or went: every answer changes anyway
            return
        hot = self._near.items_under(f"{adopted.generation}:{MEMBERSHIPS}:")
        for start in range(0, len(hot), CUSTOMERS_PER_BUDGET):
            staged.update(await self._from_cache_or_search(served, hot[start : start + CUSTOMERS_PER_BUDGET]))

    async def aclose(self) -> None:
        """Stops the work in the background: on shutdown, before the clients close."""
        tasks = [task for task in (self._warming,) if task is not None] + self._misses.running()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.cache.drain()

    async def _read_lacking(
        self, served: ServedIndices, stale: dict[tuple[str, ...], list[str]], held: dict[str, Held], *, write: bool
    ) -> None:
        """Reads what the entries lack, adds it to `held`, and writes the entries anew (behind)."""
        reads = await asyncio.gather(*(self._misses.call(c, types) for types, c in stale.items()))
        entries: dict[str, bytes] = {}
        read_from: set[str] = set()
        for fresh in reads:
            for customer, by_index in fresh.items():
                held[customer] = {**held[customer], **by_index}
                read_from.update(by_index)
                if write and (entry := served.entry_of(held[customer])) is not None:
                    entries[customer] = orjson.dumps(entry)
        await self.cache.write_behind(MEMBERSHIPS, entries)
        await self._keep_catalogs(read_from)

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

    async def _answer(self, held: dict[str, Held]) -> dict[str, bytes]:
        catalogs = await self._catalogs({index for by_index in held.values() for index in by_index})
        return {c: _segment_list(by_index, catalogs) for c, by_index in held.items()}

    async def _catalogs(self, indices: set[str]) -> dict[str, Catalog]:
        """The catalog of each index: this process's, else the cache's, else read from the index."""
        catalogs: dict[str, Catalog] = {}
        for index in indices:
            if (catalog := self.reader.loaded_catalog(index)) is not None:
                catalogs[index] = catalog
        missing = [index for index in indices if index not in catalogs]
        if missing:
            for index, serialized in (await self.cache.get_many(CATALOG, missing)).items():
                catalogs[index] = self.reader.adopt_catalog(index, serialized)
            missing = [index for index in missing if index not in catalogs]
        if missing:
            read = dict(zip(missing, await asyncio.gather(*(self.reader.catalog(index) for index in missing))))
            await self._write_catalogs(read)
            catalogs.update(read)
        return catalogs

    async def _keep_catalogs(self, indices: set[str]) -> None:
        """Writes again, at most every quarter of the cache's TTL, the catalogs that new entries
        need, with half a TTL more than theirs: a process started while Elasticsearch is down
        can then join every entry in Redis. This process holds them in memory, and would otherwise
        let Redis's copy expire (or be evicted) while entries written later still point at it."""
        now = time.monotonic()
        due = [i for i in indices if self._catalogs_kept.get(i, 0.0) <= now]
        catalogs = {i: c for i in due if (c := self.reader.loaded_catalog(i)) is not None}
        await self._write_catalogs(catalogs)

    async def _write_catalogs(self, catalogs: dict[str, Catalog]) -> None:
        if not catalogs:
            return
        ttl = self.cache.ttl_seconds
        if len(self._catalogs_kept) > 1_000:  # indices long retired: forget them
            now = time.monotonic()
            self._catalogs_kept = {i: due for i, due in self._catalogs_kept.items() if due > now}
        serialized = {i: self.reader.serialized_catalog(c) for i, c in catalogs.items()}
        # Waited for, once per index and quarter TTL: marked kept only once Redis has it. Half a TTL
        # more than the entries: rewritten every quarter, it outlives the last entry written.
        if await self.cache.put_many(CATALOG, serialized, ttl_seconds=ttl + max(1, ttl // 2)):
            for index in catalogs:
                self._catalogs_kept[index] = time.monotonic() + ttl / 4

    async def segment_summary(self, segment_id: str) -> dict[str, Any] | None:
        """member_count, calculated_at, chunks and index of the served calculation, or None."""

        async def read() -> bytes:
            return orjson.dumps(await self.reader.segment_summary(segment_id))  # None (not served) is cached too

        # Which type a segment is of, and so which switch changes its summary, is only known once
        # read: a summary is cached under the generation, which every switch moves.
        return orjson.loads(await self._cached(SEGMENT, segment_id, read, by_generation=True))

    async def holds(self, index: str, segment_id: str, customer_id: str) -> bool:
        """Whether one index (one calculation) has the customer in the segment. An index never
        changes once served, so the answer is cached, "no" as well as "yes": most membership
        checks that get this far are of customers outside the segment."""

        async def read() -> bytes:
            return b"1" if await self.reader.holds(index, segment_id, customer_id) else b"0"

        return await self._cached(HOLDS, f"{index}:{segment_id}:{customer_id}", read, by_generation=False) == b"1"

    async def _cached(
        self, kind: CacheKind, item: str, read: Callable[[], Awaitable[bytes]], *, by_generation: bool
    ) -> bytes:
        """One item's answer: from this process's near cache, else Redis, else `read` and written to both."""
        served = await self._served()
        if served is None:  # Redis cannot say which calculation is served: no cache at all
            return await read()
        key = f"{served.generation}:{item}" if by_generation else item
        cached = self._near_get(served.generation, kind, [key])
        if not cached:
            cached = await self.cache.get_many(kind, [key])
            self._near_put(served.generation, kind, cached)
        if key in cached:
            return cached[key]
        answer = {key: await read()}
        await self.cache.write_behind(kind, answer)
        self._near_put(served.generation, kind, answer)
        return answer[key]


def _segment_list(held: Held, catalogs: dict[str, Catalog]) -> bytes:
    """The JSON list of a customer's segments, sorted by id, joined from the catalogs' serialized ones."""
    serialized = sorted(
        (segment_id, catalogs[index][segment_id])
        for index, segment_ids in held.items()
        for segment_id in segment_ids
        if segment_id in catalogs[index]
    )
    return b"[" + b",".join([segment for _, segment in serialized]) + b"]"
