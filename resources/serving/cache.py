"""Cache-aside for lookups in Redis, valid per segment type, so a switch needs no invalidation.

Every alias switch INCRs `<prefix>:{served}:generation` and records, in `<prefix>:{served}`, the
index that now serves the type and that generation (resources/publishing/aliases.py). A customer's
entry, `<prefix>:lookup:m:<id>`, holds its segments per type under that generation
(resources/serving/served_indices.py): after a switch only the type that moved is read again,
and what the entry holds of the others is still answered. Catalogs and membership checks are
cached by index name, which never changes once served; segment summaries under the generation.
Redis's `maxmemory` with an LRU policy bounds the whole cache; TTLs remove what nobody reads.

What is served is read at most once per `refresh_seconds` per process; each process then gets
ready for a switch before it answers from it (resources/serving/lookups.py). The highest generation seen is also kept in a small file: if Redis ever answers a
lower one (restored from an older snapshot, or the key evicted), the counter is raised past it, so
a generation that was already used, and the entries written under it, are never read again.

`NearCache` is the bounded in-process cache that resources/serving/lookups.py keeps in front of
this one, for the answers asked about most.

Redis errors never fail a lookup: the cache is bypassed and the error counted; a circuit breaker
skips Redis altogether for a while when it keeps failing, so a dead Redis costs no timeouts.

On a Redis Cluster (resources/redis_clients.py) the counter and the hash share a slot (their hash
tag), so the scripts that read and write them run as on one server; the entries are spread over
every slot, read with one MGET per slot and written with one SET each, in one pipeline per master.

Answers are written behind: a lookup answers, then its entries are written (`write_behind`). The
write of a batch's 100 answers took ~2 ms of an uncached batch's ~11 ms median (bench_api (d),
measured), and nobody waits for it: an entry written a moment later only costs the next asker of
that customer one more search, and the in-process near cache has the answer already.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

from resources.circuit_breaker import Circuit, CircuitOpen, Circuits
from resources.names import (
    COORDINATION_CIRCUIT,
    REDIS_CIRCUIT,
    CacheKind,
    generation_key,
    lookup_key,
    served_indices_key,
    untagged_served_keys,
)
from resources.redis_clients import REDIS_ERRORS, AsyncRedis, is_cluster_client
from resources.serving.metrics import CACHE_ERRORS, CACHE_LOOKUPS
from resources.serving.coalescing import Coalescer
from resources.serving.served_indices import ServedIndices

T = TypeVar("T")
# Entries written behind at once per process; past this (Redis slow), a lookup waits for its own
# write, so a slow Redis slows lookups down rather than filling the memory with writes.
MAX_ENTRIES_BEHIND = 10_000

# The counter KEYS[1] and the hash KEYS[2], as of one moment, in one reply.
_READ_SERVED = """
return {redis.call('GET', KEYS[1]), redis.call('HGETALL', KEYS[2])}
"""

# The first time the counter KEYS[1] and the hash KEYS[2] are met missing, what their names before
# hash tags hold (KEYS[3], KEYS[4]) is carried over, so an upgrade keeps every cache entry valid.
# Answers how many types were carried. Only on one server: there a script may name any key.
_CARRY_OVER_UNTAGGED = """
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[3]) == 0 then
  return 0
end
redis.call('SET', KEYS[1], redis.call('GET', KEYS[3]))
local fields = redis.call('HGETALL', KEYS[4])
local carried = 0
for i = 1, #fields, 2 do
  carried = carried + redis.call('HSETNX', KEYS[2], fields[i], fields[i + 1])
end
return carried
"""

# Raises the counter to ARGV[1] + 1 when it is below ARGV[1]; answers the counter's value.
_RAISE_GENERATION = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[1])
if current < floor then
  redis.call('SET', KEYS[1], floor + 1)
  return floor + 1
end
return current
"""

# Corrects the hash KEYS[2] by what Elasticsearch serves: for each triple (type ARGV[i], the index
# ARGV[i + 1] that serves it, the type's field ARGV[i + 2] as read before Elasticsearch was, or ''),
# a field that names another index (or none) and has not changed since it was read gets a new
# generation of the counter KEYS[1], first raised past ARGV[1], this process's floor. A field that
# changed meanwhile is the publisher's, newer than the reading: left alone.
_RECONCILE_SERVED = """
local changed = 0
if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], tonumber(ARGV[1]) + 1)
end
for i = 2, #ARGV, 3 do
  local recorded = redis.call('HGET', KEYS[2], ARGV[i]) or ''
  local space = string.find(recorded, ' ', 1, true)
  local index = space and string.sub(recorded, space + 1) or ''
  if recorded == ARGV[i + 2] and index ~= ARGV[i + 1] then
    local generation = redis.call('INCR', KEYS[1])
    redis.call('HSET', KEYS[2], ARGV[i], generation .. ' ' .. ARGV[i + 1])
    changed = changed + 1
  end
end
return changed
"""


# Sets each KEYS[i] to ARGV[i + 1], to expire after ARGV[1] seconds. A batch's answers in one
# command and one reply: a pipeline of SETs cost the API a command to pack and a reply to parse
# each, a quarter of a worker's CPU in uncached batches (measured). On a cluster the keys of one
# call would have to share a slot, which a batch's customers do not: there, the pipeline it is.
_SET_MANY = """
local ttl = ARGV[1]
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[i + 1], 'EX', ttl)
end
return #KEYS
"""


# Keys per write command: one script call holds Redis for its whole length.
KEYS_PER_WRITE = 500
# Keys per shared MGET (a batch of 1,000 customers asks in one read of its own).
MAX_KEYS_PER_READ = 1_000


def _parts(keyed: dict[str, bytes]) -> Iterator[list[tuple[str, bytes]]]:
    items = list(keyed.items())
    for start in range(0, len(items), KEYS_PER_WRITE):
        yield items[start : start + KEYS_PER_WRITE]


class GenerationFile:
    """The highest generation this deployment has seen, kept across API restarts."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> int:
        try:
            return int(self.path.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    def write(self, generation: int) -> None:
        with contextlib.suppress(OSError):  # a read-only disk only loses the guard, never a lookup
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(f"{generation}\n")
            os.replace(partial, self.path)


class NearCache:
    """The last answers this process read or wrote, in front of Redis: a bounded LRU of bytes.

    Its keys hold the generation like Redis's, so an entry can never be stale, only evicted; it
    saves the Redis round trip for the customers asked about most, and outlives a Redis outage.
    Bounded in entries and in bytes: an answer is ~250 bytes a segment, so a customer in 1,000+
    segments of a 100K-segment type takes ~300 KB, and 10,000 of them took gigabytes a worker.
    """

    def __init__(self, entries: int, max_bytes: int = 64 << 20) -> None:
        self._entries = entries
        self._max_bytes = max_bytes
        self._bytes = 0
        self._values: OrderedDict[str, bytes] = OrderedDict()

    def get(self, key: str) -> bytes | None:
        value = self._values.get(key)
        if value is not None:
            self._values.move_to_end(key)
        return value

    def items_under(self, prefix: str) -> list[str]:
        """What follows `prefix` in the keys that start with it, the most recently used first."""
        return [key[len(prefix) :] for key in reversed(self._values) if key.startswith(prefix)]

    def put(self, key: str, value: bytes) -> None:
        if self._entries <= 0 or len(value) > self._max_bytes:
            return
        replaced = self._values.get(key)
        self._bytes += len(value) - (len(replaced) if replaced is not None else 0)
        self._values[key] = value
        self._values.move_to_end(key)
        while len(self._values) > self._entries or self._bytes > self._max_bytes:
            self._bytes -= len(self._values.popitem(last=False)[1])


class LookupCache:
    def __init__(
        self,
        client: AsyncRedis,
        prefix: str,
        *,
        breakers: Circuits,
        ttl_seconds: int,
        refresh_seconds: float,
        generation_file: GenerationFile,
        coordination: AsyncRedis | None = None,
    ) -> None:
        self._redis = client
        self._cluster = is_cluster_client(client)
        # The generation counter lives with the locks when coordination has a Redis of its own.
        self._coordination = coordination or client
        self._set_many = client.register_script(_SET_MANY)
        self._read_served = self._coordination.register_script(_READ_SERVED)
        self._prefix = prefix
        self._circuit = breakers.get(REDIS_CIRCUIT)
        # A healthy coordination Redis must not close the cache's breaker, nor the other way round.
        self._coordination_circuit = (
            breakers.get(COORDINATION_CIRCUIT) if self._coordination is not client else self._circuit
        )
        self._ttl = ttl_seconds
        self._refresh = refresh_seconds
        self._file = generation_file
        self._floor = generation_file.read()
        self._served: ServedIndices | None = None
        self._valid_until = 0.0
        self._pending: dict[int, dict[str, bytes]] = {}  # TTL -> Redis key -> value, to write behind
        self._entries_behind = 0  # pending or being written
        self._writer: asyncio.Task[None] | None = None
        # Reads of the same moment share one MGET: under load, fewer round trips for the API and Redis.
        self._reads: Coalescer[bytes] = Coalescer(self._mget, max_ids=MAX_KEYS_PER_READ)

    async def _call(
        self, operation: str, call: Callable[[], Awaitable[T]], circuit: Circuit | None = None
    ) -> tuple[bool, T | None]:
        """(True, the call's answer), or (False, None) when Redis failed or its breaker is open (counted)."""
        try:
            return True, await (circuit or self._circuit).call(call)
        except (CircuitOpen, *REDIS_ERRORS, OSError, TimeoutError):
            CACHE_ERRORS.labels(operation).inc()
            return False, None

    async def served(self) -> ServedIndices | None:
        """What is served and since which generation, or None when Redis cannot say (then the cache is bypassed)."""
        now = time.monotonic()
        if now < self._valid_until:
            return self._served
        prefix = self._prefix

        async def read() -> tuple[bytes | None, dict[bytes, bytes]]:
            # One script: one reply, one moment, and on a cluster one slot (a MULTI there cannot
            # follow a slot being migrated).
            generation, fields = await self._read_served(keys=[generation_key(prefix), served_indices_key(prefix)])
            return generation, dict(zip(fields[::2], fields[1::2]))

        ok, answer = await self._call("served", read, self._coordination_circuit)
        served = ServedIndices.parse(int(answer[0] or 0), answer[1]) if ok and answer else None
        if served is not None and served.generation < self._floor:
            ok, raised = await self._call(
                "generation",
                lambda: self._coordination.eval(_RAISE_GENERATION, 1, generation_key(prefix), self._floor),
                self._coordination_circuit,
            )
            served = ServedIndices(int(raised), served.types) if ok else None  # type: ignore[arg-type]
        if served is not None and served.generation > self._floor:
            self._floor = served.generation
            self._file.write(served.generation)
        self._served = served
        self._valid_until = now + self._refresh
        return served

    async def carry_over_untagged_record(self) -> int:
        """On a plain Redis, carries the counter and the record of what is served over from their
        names before hash tags, the first time their new names are found missing (an upgrade). On a
        cluster there is nothing to carry: those names never worked there. Answers how many types."""
        if is_cluster_client(self._coordination):
            return 0
        keys = [generation_key(self._prefix), served_indices_key(self._prefix), *untagged_served_keys(self._prefix)]
        ok, carried = await self._call(
            "served", lambda: self._coordination.eval(_CARRY_OVER_UNTAGGED, 4, *keys), self._coordination_circuit
        )
        return int(carried or 0) if ok else 0

    async def served_record(self) -> dict[str, str] | None:
        """Redis's record of what is served (type -> "<generation> <index>"), None when unreadable."""
        ok, recorded = await self._call(
            "served", lambda: self._coordination.hgetall(served_indices_key(self._prefix)), self._coordination_circuit
        )
        return {t.decode(): v.decode() for t, v in recorded.items()} if ok and recorded is not None else None

    async def reconcile_served(self, recorded: dict[str, str] | None, served: dict[str, str]) -> int:
        """Corrects Redis's record (`recorded`, as `served_record` read it before Elasticsearch was
        read) by what Elasticsearch serves (type -> index): a type missing (an upgrade, a Redis
        that lost its data) or naming another index (restored from an old snapshot, a switch whose
        record failed) gets a new generation, unless the publisher wrote it since. Answers how many."""
        if recorded is None or not served:
            return 0
        triples = [item for t, index in sorted(served.items()) for item in (t, index, recorded.get(t, ""))]
        keys = [generation_key(self._prefix), served_indices_key(self._prefix)]
        ok, changed = await self._call(
            "served",
            lambda: self._coordination.eval(_RECONCILE_SERVED, 2, *keys, self._floor, *triples),
            self._coordination_circuit,
        )
        if ok and changed:
            self._valid_until = 0.0  # read it again at the next lookup
        return int(changed or 0) if ok else 0

    def _key(self, kind: CacheKind, item: str) -> str:
        return lookup_key(self._prefix, kind, item)

    async def get_many(self, kind: CacheKind, items: list[str]) -> dict[str, bytes]:
        """item -> cached value for those in Redis; the rest are misses."""
        found: dict[str, bytes] = {}
        if not items:
            return found
        wanted = {self._key(kind, item): item for item in items}  # Redis key -> item
        values = await self._reads.call(list(wanted))
        hits = 0
        for key, item in wanted.items():
            if (value := values.get(key)) is not None:
                found[item] = value
                hits += 1
        if hits:
            CACHE_LOOKUPS.labels(kind, "hit").inc(hits)
        if len(wanted) > hits:
            CACHE_LOOKUPS.labels(kind, "miss").inc(len(wanted) - hits)
        return found

    async def _mget(self, keys: list[str], _: tuple[str, ...]) -> dict[str, bytes]:
        """Redis key -> value of those Redis holds (none when it fails: the error is counted). On a
        cluster, one MGET per slot, in one pipeline per master (the masters at once)."""
        read = self._redis.mget_nonatomic if self._cluster else self._redis.mget  # type: ignore[union-attr]
        ok, values = await self._call("get", lambda: read(keys))
        return {k: v for k, v in zip(keys, values) if v is not None} if ok and values is not None else {}

    @property
    def ttl_seconds(self) -> int:
        return self._ttl

    async def put_many(self, kind: CacheKind, values: dict[str, bytes], ttl_seconds: int | None = None) -> bool:
        """Whether Redis took them (a failure is counted, never raised)."""
        if not values:
            return True
        return await self._set(ttl_seconds or self._ttl, {self._key(kind, item): value for item, value in values.items()})

    async def _set(self, ttl: int, keyed: dict[str, bytes]) -> bool:
        if len(keyed) == 1:
            [(key, value)] = keyed.items()
            ok, _ = await self._call("set", lambda: self._redis.set(key, value, ex=ttl))
        elif self._cluster:
            ok, _ = await self._call("set", lambda: self._set_each(ttl, keyed))
        else:
            ok, _ = await self._call("set", lambda: self._set_many(keys=list(keyed), args=[ttl, *keyed.values()]))
        return ok

    async def _set_each(self, ttl: int, keyed: dict[str, bytes]) -> None:
        pipe = self._redis.pipeline(transaction=False)  # on a cluster: one per master, sent at once
        for key, value in keyed.items():
            pipe.set(key, value, ex=ttl)
        await pipe.execute()

    async def write_behind(self, kind: CacheKind, values: dict[str, bytes], ttl_seconds: int | None = None) -> None:
        """`put_many` without the caller waiting for it, so the answer goes out first. The writes of
        the same moment go together, in one command per TTL: under load, a miss then costs Redis
        one round trip (its read) rather than two. Waited for here when `MAX_ENTRIES_BEHIND` are
        pending or being written already."""
        if not values:
            return
        if self._entries_behind >= MAX_ENTRIES_BEHIND:
            await self.put_many(kind, values, ttl_seconds)
            return
        ttl = ttl_seconds or self._ttl
        self._pending.setdefault(ttl, {}).update((self._key(kind, item), value) for item, value in values.items())
        self._entries_behind += len(values)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_pending())

    async def _write_pending(self) -> None:
        try:
            await asyncio.sleep(0)  # this moment's other answers add their writes first
            while self._pending:
                pending, self._pending = self._pending, {}
                try:
                    await asyncio.gather(
                        *(self._set(ttl, dict(part)) for ttl, keyed in pending.items() for part in _parts(keyed))
                    )
                finally:
                    self._entries_behind -= sum(len(keyed) for keyed in pending.values())
        finally:
            self._writer = None

    async def drain(self) -> None:
        """Waits for the writes still pending: on shutdown, before the Redis client closes."""
        while self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)  # Redis errors are counted already
