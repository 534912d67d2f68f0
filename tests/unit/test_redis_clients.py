"""Redis clients from the settings, the cluster settings' defaults, the keys' hash tags, and the
mismatch message (no server needed: a cluster client of redis.asyncio connects at its first command)."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from resources.names import CacheKind, generation_key, ingestion_lock_key, lookup_key, served_indices_key
from resources.redis_clients import (
    RedisServer,
    _mismatch,
    async_redis_client,
    cache_server,
    coordination_server,
    is_cluster_client,
)
from resources.settings import Settings


def test_the_generation_and_the_record_of_what_is_served_share_a_slot_and_the_prefix() -> None:
    for prefix in ("segments", "test-1a2b3c4d", "eu_prod"):
        keys = [generation_key(prefix), served_indices_key(prefix)]
        assert len({key_slot(key.encode()) for key in keys}) == 1, keys
        assert all(key.startswith(f"{prefix}:") for key in keys)  # SCAN MATCH <prefix>:* still finds them
    assert key_slot(generation_key("segments").encode()) == key_slot(b"{served}")


def test_cache_entries_and_locks_carry_no_tag_so_they_spread_over_the_slots() -> None:
    slots = {key_slot(lookup_key("segments", CacheKind.MEMBERSHIPS, f"c{n}").encode()) for n in range(1_000)}
    assert len(slots) > 900
    assert "{" not in lookup_key("segments", CacheKind.HOLDS, "i:s:c") + ingestion_lock_key("segments", "new_customers")


def test_the_coordination_cluster_setting_follows_the_caches_unless_it_has_its_own() -> None:
    assert Settings(redis_cluster=True).coordination_redis_cluster is True
    assert Settings(redis_cluster=True, lock_redis_cluster=False).coordination_redis_cluster is True  # no URL of its own
    assert Settings(redis_cluster=True, lock_redis_url="redis://locks:6379/0").coordination_redis_cluster is True
    own = Settings(redis_cluster=True, lock_redis_url="redis://locks:6379/0", lock_redis_cluster=False)
    assert own.coordination_redis_cluster is False
    assert coordination_server(own) == RedisServer(
        "redis://locks:6379/0", False, "SEGMENTATION_LOCK_REDIS_URL", "SEGMENTATION_LOCK_REDIS_CLUSTER"
    )
    following = coordination_server(Settings(lock_redis_url="redis://locks:6379/0"))
    assert following.cluster_follows == "SEGMENTATION_REDIS_CLUSTER"
    assert coordination_server(Settings(redis_cluster=True)) == cache_server(Settings(redis_cluster=True))


def test_the_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGMENTATION_REDIS_CLUSTER", "true")
    assert Settings().redis_cluster is True
    assert Settings().lock_redis_cluster is None


def test_the_flag_picks_the_client() -> None:
    async def made() -> tuple[object, object]:
        cluster = async_redis_client(RedisServer("redis://127.0.0.1:7379/0", True))
        plain = async_redis_client(RedisServer("redis://127.0.0.1:6379/0", False))
        try:
            return cluster, plain
        finally:
            await cluster.aclose()
            await plain.aclose()

    cluster, plain = asyncio.run(made())
    assert isinstance(cluster, aioredis.RedisCluster) and is_cluster_client(cluster)
    assert isinstance(plain, aioredis.Redis) and not is_cluster_client(plain)


def test_a_mismatch_names_the_settings_and_never_the_password() -> None:
    told_cluster = str(_mismatch(RedisServer("redis://:s3cret@cache:6379/0", True), enabled=False))
    assert "SEGMENTATION_REDIS_CLUSTER is true" in told_cluster and "SEGMENTATION_REDIS_URL" in told_cluster
    assert "s3cret" not in told_cluster
    locks = RedisServer(
        "redis://:s3cret@locks:6379/0", False, "SEGMENTATION_LOCK_REDIS_URL", "SEGMENTATION_LOCK_REDIS_CLUSTER",
        cluster_follows="SEGMENTATION_REDIS_CLUSTER",
    )
    told_plain = str(_mismatch(locks, enabled=True))
    assert "SEGMENTATION_LOCK_REDIS_CLUSTER (unset, so as SEGMENTATION_REDIS_CLUSTER) is false" in told_plain
    assert "Set SEGMENTATION_LOCK_REDIS_CLUSTER=true" in told_plain
    assert "s3cret" not in told_plain
