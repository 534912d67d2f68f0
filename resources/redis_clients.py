"""Redis clients made from the settings: a plain client, or a Redis Cluster client when the settings
say that the URL names a node of a cluster (`SEGMENTATION_REDIS_CLUSTER`, and for coordination
`SEGMENTATION_LOCK_REDIS_CLUSTER`, which follows it unless set).

Every process makes its clients here (the API, the Dagster resource, the command line), so one
setting switches them all. A cluster client learns the slot map from the node the URL names and
sends each command to the master that serves its key's slot. It follows the cluster's redirections
itself: MOVED (the slot lives elsewhere now: the map is refreshed and the command sent again there),
ASK (the slot is being migrated and the key has gone already: the command goes once to the target,
after ASKING) and TRYAGAIN (a command over several keys of a slot being migrated: sent again
shortly). So a slot that moves costs a lookup a round trip or two, never an error.

A command over several keys works on a cluster only when they share a slot, so the keys that go
together carry a hash tag (resources/names.py). The cache's entries do not: each customer's is
read with others in one MGET on a plain Redis, and on a cluster in one MGET per slot, sent to each
master as one pipeline (`mget_nonatomic`). The writes behind the answers are one Lua call on a plain
Redis, one pipeline of SETs per master on a cluster (resources/serving/cache.py).

`check_cluster_mode` compares the setting with what the server says (`INFO cluster`); a mismatch
fails the process at startup, naming the setting, rather than failing every command later with
MOVED (a plain client on a cluster node) or at connection (a cluster client on a plain Redis).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisClusterException, RedisError

from resources.json_logs import redact
from resources.settings import Settings

SyncRedis: TypeAlias = redis.Redis | redis.RedisCluster
AsyncRedis: TypeAlias = aioredis.Redis | aioredis.RedisCluster

# What a failing Redis raises: a cluster client that reaches no node raises the second, which is
# not a RedisError.
REDIS_ERRORS = (RedisError, RedisClusterException)

CHECK_TIMEOUT_SECONDS = 2.0


def _asking_on_the_same_connection() -> None:
    """redis-py's asyncio cluster client (6.4, and its main branch as of August 2026) follows an ASK
    with two commands, ASKING then the redirected one, each over a connection taken from the target
    node's pool, the oldest idle one first. With two idle connections or more (any process under
    load) they go over different ones: the target, not asked, answers MOVED back to the source,
    which answers ASK again, until the command fails (`TTL exhausted`). Every read and write of a
    slot being migrated then failed. Taking the connection released last instead hands the command
    ASKING's connection: nothing runs between ASKING's release and the command's acquire (no await
    in between). tests/integration/test_redis_cluster.py holds it to that."""
    oldest_first = ClusterNode.acquire_connection
    if getattr(oldest_first, "latest_first", False):
        return

    def acquire_connection(node: ClusterNode) -> AbstractConnection:
        free = node._free  # noqa: SLF001 - the pool's idle connections
        return free.pop() if free else oldest_first(node)  # none idle: a new one, as before

    acquire_connection.latest_first = True  # type: ignore[attr-defined]
    ClusterNode.acquire_connection = acquire_connection  # type: ignore[method-assign]


_asking_on_the_same_connection()


class RedisClusterMismatch(RuntimeError):
    """The cluster setting says one thing and the server another."""


@dataclass(frozen=True)
class RedisServer:
    """One Redis of the platform, and the settings that name it (for messages)."""

    url: str
    cluster: bool
    url_setting: str = "SEGMENTATION_REDIS_URL"
    cluster_setting: str = "SEGMENTATION_REDIS_CLUSTER"
    cluster_follows: str | None = None  # the setting `cluster_setting` takes its value from while unset


def cache_server(settings: Settings) -> RedisServer:
    return RedisServer(settings.redis_url, settings.redis_cluster)


def coordination_server(settings: Settings) -> RedisServer:
    """The ingestion locks' and the generation counter's Redis: the cache's, unless it has its own."""
    if not settings.lock_redis_url:
        return cache_server(settings)
    follows = "SEGMENTATION_REDIS_CLUSTER" if settings.lock_redis_cluster is None else None
    return RedisServer(
        settings.lock_redis_url,
        settings.coordination_redis_cluster,
        url_setting="SEGMENTATION_LOCK_REDIS_URL",
        cluster_setting="SEGMENTATION_LOCK_REDIS_CLUSTER",
        cluster_follows=follows,
    )


def redis_client(server: RedisServer, **options: Any) -> SyncRedis:
    """A client of `server` (`options`: redis-py's, such as timeouts). A cluster client connects at
    once, to learn the slot map."""
    if server.cluster:
        return redis.RedisCluster.from_url(server.url, **options)
    return redis.Redis.from_url(server.url, **options)


def async_redis_client(server: RedisServer, **options: Any) -> AsyncRedis:
    """An asyncio client of `server`; a cluster client learns the slot map at its first command."""
    if server.cluster:
        return aioredis.RedisCluster.from_url(server.url, **options)
    return aioredis.Redis.from_url(server.url, **options)


def is_cluster_client(client: object) -> bool:
    return isinstance(client, (redis.RedisCluster, aioredis.RedisCluster))


def _mismatch(server: RedisServer, enabled: bool) -> RedisClusterMismatch:
    setting = f"{server.cluster_setting} (unset, so as {server.cluster_follows})" if server.cluster_follows else server.cluster_setting
    url = f"{server.url_setting} ({redact(server.url)})"
    if enabled:
        return RedisClusterMismatch(
            f"{setting} is false, but {url} names a node of a Redis Cluster (INFO cluster: cluster_enabled:1). "
            f"Set {server.cluster_setting}=true."
        )
    return RedisClusterMismatch(
        f"{setting} is true, but {url} names a Redis that is not in cluster mode (INFO cluster: cluster_enabled:0). "
        f"Set {server.cluster_setting}=false, or name a node of the cluster in {server.url_setting}."
    )


def _enabled(info: dict[str, Any]) -> bool:
    return str(info.get("cluster_enabled", "0")) in ("1", "True", "true")


def check_cluster_mode(server: RedisServer, timeout: float = CHECK_TIMEOUT_SECONDS) -> bool:
    """Raises `RedisClusterMismatch` when the server's mode is not the setting's. Answers whether it
    could tell: a server that does not answer now is not held against the process (Redis down:
    lookups still answer, from Elasticsearch)."""
    try:
        client = redis.Redis.from_url(server.url, socket_timeout=timeout, socket_connect_timeout=timeout)
    except ValueError:  # not a Redis URL: making the client says so, with the password redacted
        return False
    try:
        info = client.info("cluster")
    except (RedisError, OSError):
        return False
    finally:
        client.close()
    if _enabled(info) != server.cluster:
        raise _mismatch(server, _enabled(info))
    return True


async def check_cluster_mode_async(server: RedisServer, timeout: float = CHECK_TIMEOUT_SECONDS) -> bool:
    """`check_cluster_mode` for an event loop."""
    try:
        client = aioredis.Redis.from_url(server.url, socket_timeout=timeout, socket_connect_timeout=timeout)
    except ValueError:
        return False
    try:
        info = await client.info("cluster")
    except (RedisError, OSError):
        return False
    finally:
        await client.aclose()
    if _enabled(info) != server.cluster:
        raise _mismatch(server, _enabled(info))
    return True
