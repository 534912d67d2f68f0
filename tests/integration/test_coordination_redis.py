"""The coordination Redis (`SEGMENTATION_LOCK_REDIS_URL`): `services up` starts it never evicting,
the ingestion locks and the generation counter live there on the publishing side and the API's,
and memory pressure on the cache evicts neither."""

from __future__ import annotations

import asyncio
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from api.lifespan import open_state
from definitions import build_resources
from devtools.local_services import services_down, services_up
from resources.names import generation_key, ingestion_lock_key, served_indices_key
from resources.publishing.aliases import record_switch
from resources.publishing.lock import IngestionLock
from resources.settings import Settings

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def split(settings: Settings, services: Settings) -> Iterator[Settings]:
    """This namespace with a cache Redis and a coordination Redis of its own, started by `services up`."""
    state_dir = Path(services.state_dir) / f"test-{uuid.uuid4().hex[:8]}"  # reachable by the service user
    own = settings.model_copy(update={
        "state_dir": state_dir,
        "redis_url": f"redis://127.0.0.1:{_free_port()}/0",
        "lock_redis_url": f"redis://127.0.0.1:{_free_port()}/0",
    })
    try:
        yield own
    finally:
        services_down(own)
        shutil.rmtree(state_dir, ignore_errors=True)


def test_up_starts_a_coordination_redis_that_never_evicts(split: Settings) -> None:
    states = {s.name: s for s in services_up(split)}
    assert states["Redis"].managed and states["Redis (coordination)"].managed
    assert states["Redis (coordination)"].running
    cache, coordination = redis.Redis.from_url(split.redis_url), redis.Redis.from_url(split.coordination_redis_url)
    assert cache.config_get("maxmemory-policy")["maxmemory-policy"] == "volatile-lru"
    assert coordination.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    assert coordination.config_get("appendonly")["appendonly"] == "yes"  # the counter survives a restart


def test_cache_pressure_evicts_neither_the_lock_nor_the_generation(split: Settings) -> None:
    services_up(split)
    cache, coordination = redis.Redis.from_url(split.redis_url), redis.Redis.from_url(split.coordination_redis_url)
    cache.config_set("maxmemory", "2mb")  # this test's own cache server: fill it quickly
    # What the index and alias assets use, as Dagster starts it (its URL from the environment).
    with build_resources(split)["redis"].process_config_and_initialize_cm() as coordination_resource:
        publishing = coordination_resource.client()
        generation = record_switch(publishing, split.index_prefix, "new_customers", "segments-new_customers-x", 0)
        lock = IngestionLock(publishing, split.index_prefix, "new_customers", 600, owner="run-under-pressure")

        with lock.held() as held:
            entry = b"x" * 4096
            for batch in range(100):  # up to ~20 MB of cache entries (with their TTL) into a 2 MB cache
                pipeline = cache.pipeline(transaction=False)
                for n in range(50):
                    pipeline.set(f"{split.index_prefix}:lookup:m:c{batch}-{n}", entry, ex=3600)
                pipeline.execute()
                if cache.info("stats")["evicted_keys"] > 1_000:
                    break
            assert cache.info("stats")["evicted_keys"] > 1_000
            held.confirm()  # raises unless Redis says the lock is still ours

    assert coordination.get(ingestion_lock_key(split.index_prefix, "new_customers")) is None  # released on leaving
    assert cache.get(ingestion_lock_key(split.index_prefix, "new_customers")) is None  # never on the cache
    assert int(coordination.get(generation_key(split.index_prefix))) == generation
    assert coordination.hget(served_indices_key(split.index_prefix), "new_customers") is not None

    async def api_generation() -> int | None:  # after evictions, what an API process reads
        state, es, clients = open_state(split)  # what an API process opens
        try:
            assert (await state.readiness.check())["redis_coordination"] == "ok"
            served = await state.lookups.cache.served()
            return served.generation if served else None
        finally:
            await es.close()
            for client in clients:
                await client.aclose()

    assert asyncio.run(api_generation()) == generation
