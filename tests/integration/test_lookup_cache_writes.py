"""The cache's writes go behind the answers, on the real Redis: a slow Redis delays no lookup, the
writes all land (shutdown waits for them), and their number in flight is bounded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from prometheus_client import REGISTRY

from resources.names import CacheKind, lookup_key
from resources.redis_clients import AsyncRedis, async_redis_client, cache_server
from resources.serving import cache as lookup_cache
from resources.serving.cache import GenerationFile, LookupCache
from resources.serving.search_guard import breaker_factory
from resources.settings import Settings
from tests.redis_servers import cache_redis, get_many
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

REDIS_TIMEOUT = 0.5
ANSWERS = {f"c{n:03d}": f'{{"i": ["s{n}"]}}'.encode() for n in range(100)}


@pytest.fixture(scope="module")
def settings(settings_on_each_redis: Settings) -> Settings:
    """This module runs on a plain Redis, then on a Redis Cluster: there, the proxy stands before
    the node that the URL names, which the client asks for the others' addresses."""
    return settings_on_each_redis


def redis_port(settings: Settings) -> int:
    return urlsplit(settings.redis_url).port or 6379


@pytest.fixture
def proxy(settings: Settings) -> Iterator[TcpProxy]:
    proxy = TcpProxy("127.0.0.1", redis_port(settings))
    yield proxy
    proxy.close()


def cache_through(proxy: TcpProxy, settings: Settings, tmp_path: Path) -> tuple[LookupCache, AsyncRedis]:
    through_proxy = settings.redis_url.replace(f":{redis_port(settings)}", f":{proxy.port}")
    client = async_redis_client(
        replace(cache_server(settings), url=through_proxy), socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
    )
    cache = LookupCache(
        client,
        settings.index_prefix,
        breakers=breaker_factory(failures=100, open_seconds=30),
        ttl_seconds=60,
        refresh_seconds=1,
        generation_file=GenerationFile(tmp_path / "generation"),
    )
    return cache, client


def failed_writes() -> float:
    return REGISTRY.get_sample_value("segmentation_cache_errors_total", {"operation": "set"}) or 0.0


def stored(settings: Settings, customer_ids: list[str]) -> dict[str, bytes]:
    keys = [lookup_key(settings.index_prefix, CacheKind.MEMBERSHIPS, c) for c in customer_ids]
    return {c: v for c, v in zip(customer_ids, get_many(cache_redis(settings), keys)) if v is not None}


def test_the_writes_land_once_drained(proxy: TcpProxy, settings: Settings, tmp_path: Path) -> None:
    async def scenario() -> None:
        cache, client = cache_through(proxy, settings, tmp_path)
        await cache.write_behind(CacheKind.MEMBERSHIPS, dict(list(ANSWERS.items())[:50]))
        await cache.write_behind(CacheKind.MEMBERSHIPS, dict(list(ANSWERS.items())[50:]))
        await cache.drain()
        await client.aclose()

    asyncio.run(scenario())
    assert stored(settings, list(ANSWERS)) == ANSWERS
    ttl = cache_redis(settings).ttl(lookup_key(settings.index_prefix, CacheKind.MEMBERSHIPS, "c007"))
    assert 0 < ttl <= 60


def test_a_hanging_redis_delays_no_caller_until_the_writes_in_flight_reach_their_bound(
    proxy: TcpProxy, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lookup_cache, "MAX_ENTRIES_BEHIND", 2)
    proxy.swallow()  # connections accepted, never answered: each write waits for its timeouts
    failed_before = failed_writes()

    async def scenario() -> tuple[list[float], float]:
        cache, client = cache_through(proxy, settings, tmp_path)
        waited = []
        for n in range(3):
            started = time.monotonic()
            await cache.write_behind(CacheKind.MEMBERSHIPS, {f"hanging-{n}": ANSWERS[f"c{n:03d}"]})
            waited.append(time.monotonic() - started)
        started = time.monotonic()
        await cache.drain()
        drained = time.monotonic() - started
        await client.aclose()
        return waited, drained

    waited, drained = asyncio.run(scenario())
    assert waited[0] < 0.1 and waited[1] < 0.1  # behind the caller
    assert waited[2] >= REDIS_TIMEOUT * 0.9  # the third is over the bound: its caller waits for it
    assert drained < 10 * REDIS_TIMEOUT  # shutdown waits for the writes in flight, and they end
    # Each failed command is counted, none lost silently: the two writes behind went in one.
    assert failed_writes() == failed_before + 2
    assert stored(settings, [f"hanging-{n}" for n in range(3)]) == {}
