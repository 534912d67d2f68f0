"""The tests' side of Redis: clients of a namespace's Redis, a plain server or a Redis Cluster, as the
platform makes them (resources/redis_clients.py), and the reads and removals over many keys that a
cluster spreads over its slots."""

from __future__ import annotations

from resources.redis_clients import SyncRedis, cache_server, coordination_server, is_cluster_client, redis_client
from resources.settings import Settings

# The tests' own Redis Cluster: three masters on this port and the two after it (their cluster bus
# on each port + 10000), started by the first session that needs it (tests/conftest.py) and left
# running, as the other servers are (`segmentation services down` stops it).
TEST_CLUSTER_PORT = 7379

# SCAN's default count (10) walks a Redis full of other keys (a developer's benchmarks leave
# millions) in one round trip per 10 of them: minutes per namespace.
SCAN_COUNT = 10_000


def cache_redis(settings: Settings) -> SyncRedis:
    return redis_client(cache_server(settings))


def coordination_redis(settings: Settings) -> SyncRedis:
    return redis_client(coordination_server(settings))


def get_many(client: SyncRedis, keys: list[str]) -> list[bytes | None]:
    """MGET; on a cluster, one per slot (the keys of many customers share none)."""
    return client.mget_nonatomic(keys) if is_cluster_client(client) else client.mget(keys)  # type: ignore[union-attr]


def unlink_matching(client: SyncRedis, pattern: str) -> int:
    """Removes every key matching `pattern` (on a cluster, from every master); answers how many."""
    keys = list(client.scan_iter(pattern, count=SCAN_COUNT))
    for start in range(0, len(keys), SCAN_COUNT):
        client.unlink(*keys[start : start + SCAN_COUNT])  # a cluster client sends one UNLINK per slot
    return len(keys)
