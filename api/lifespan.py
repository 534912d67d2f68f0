"""The API process's life: every client opened before the first request and closed after the last,
and the background work that keeps each worker's view fresh."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from elasticsearch import AsyncElasticsearch
from fastapi import FastAPI

from api.key_cache import ApiKeyCache
from api.state import AppState
from resources.config_store.api_keys import ApiKeyRepository
from resources.config_store.database import engine_for, session_factory
from resources.config_store.guard import ConfigStoreGuard
from resources.config_store.revocations import listen_for_revocations
from resources.config_store.history import CalculationHistory
from resources.config_store.previews import PreviewRepository
from resources.config_store.segments import SegmentRepository
from resources.redis_clients import (
    AsyncRedis,
    RedisServer,
    async_redis_client,
    cache_server,
    check_cluster_mode_async,
    coordination_server,
)
from resources.serving.cache import GenerationFile, LookupCache
from resources.serving.export import SegmentExport
from resources.serving.lookups import SegmentLookups
from resources.serving.reader import SegmentReader
from resources.serving.readiness import Readiness
from resources.serving.search_guard import SearchGuard, breaker_factory, search_client
from resources.serving.served_state import PARTITION_PERIOD, keep_served_state, refresh_served_state
from resources.settings import Settings

# API keys' last_used_at is written in the background at most this often (per key and process).
KEY_USAGE_FLUSH_SECONDS = 60.0


async def _refresh_archived(state: AppState) -> None:
    while True:
        with contextlib.suppress(Exception):  # PostgreSQL down: keep the last known set
            state.archived_segment_ids = await state.config_store.run(state.segments.archived_ids)
        # An archived segment must leave lookups within 60 s; the setting keeps well within that.
        await asyncio.sleep(state.settings.archived_refresh_seconds)


async def _record_key_usage(state: AppState) -> None:
    while True:
        await asyncio.sleep(KEY_USAGE_FLUSH_SECONDS)
        with contextlib.suppress(Exception):  # PostgreSQL down: the times wait for the next flush
            await state.api_keys.flush_usage()


def generation_file(settings: Settings) -> GenerationFile:
    return GenerationFile(settings.state_dir / "api" / f"{settings.index_prefix}.generation")


def _redis(server: RedisServer, settings: Settings) -> AsyncRedis:
    return async_redis_client(
        server, socket_timeout=settings.api_redis_timeout_seconds, socket_connect_timeout=settings.api_redis_timeout_seconds
    )


async def check_redis_servers(settings: Settings) -> None:
    """Fails the startup when a Redis is not in the mode its cluster setting says (the message
    names the setting); a Redis that does not answer now is left to the breakers."""
    servers = [cache_server(settings)] + ([coordination_server(settings)] if settings.lock_redis_url else [])
    for server in servers:
        await check_cluster_mode_async(server)


def open_state(settings: Settings) -> tuple[AppState, AsyncElasticsearch, list[AsyncRedis]]:
    """The process's state, and the clients that the lifespan closes at the end."""
    sessions = session_factory(settings.database_url)
    es = search_client(settings.elasticsearch_url, settings.api_search_budget_seconds)
    redis = _redis(cache_server(settings), settings)
    coordination = _redis(coordination_server(settings), settings) if settings.lock_redis_url else redis
    breakers = breaker_factory(settings.api_breaker_failures, settings.api_breaker_open_seconds)
    guard = SearchGuard(
        breakers, budget_seconds=settings.api_search_budget_seconds, open_seconds=settings.api_breaker_open_seconds
    )
    reader = SegmentReader(es, settings.index_prefix, guard, catalog_budget_seconds=settings.api_export_budget_seconds)
    cache = LookupCache(
        redis,
        settings.index_prefix,
        breakers=breakers,
        ttl_seconds=settings.lookup_cache_ttl_seconds,
        refresh_seconds=settings.lookup_generation_refresh_seconds,
        generation_file=generation_file(settings),
        coordination=coordination,
    )
    config_store = ConfigStoreGuard(breakers, open_seconds=settings.api_breaker_open_seconds)
    state = AppState(
        settings=settings,
        segments=SegmentRepository(sessions),
        history=CalculationHistory(sessions),
        previews=PreviewRepository(sessions),
        config_store=config_store,
        api_keys=ApiKeyCache(
            ApiKeyRepository(sessions), config_store=config_store, accept_legacy=settings.api_accept_legacy_keys
        ),
        lookups=SegmentLookups(
            reader, cache, near_entries=settings.lookup_near_cache_entries, near_bytes=settings.lookup_near_cache_megabytes << 20
        ),
        export=SegmentExport(reader, settings.api_export_budget_seconds),
        readiness=Readiness(
            es, redis, engine_for(settings.database_url), coordination if coordination is not redis else None
        ),
    )
    return state, es, [redis] if coordination is redis else [redis, coordination]


def lifespan_for(settings: Settings) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await check_redis_servers(settings)
        state, es, redis_clients = open_state(settings)
        PARTITION_PERIOD.set(settings.partition_seconds)
        app.state.segmentation = state
        # What Elasticsearch serves corrects what Redis lacks or lost of it, before the first lookup.
        reconciler = state.lookups.cache
        await reconciler.carry_over_untagged_record()
        failing = await refresh_served_state(es, settings.index_prefix, reconciler=reconciler)
        background = [
            asyncio.create_task(_refresh_archived(state)),
            asyncio.create_task(_record_key_usage(state)),
            asyncio.create_task(keep_served_state(es, settings.index_prefix, reconciler=reconciler, failing=failing)),
            asyncio.create_task(
                listen_for_revocations(settings.coordination_redis_url, settings.index_prefix, state.api_keys.revoked)
            ),
        ]
        # The ~180,000 objects made by imports and startup live as long as the process: out of the
        # collector's sight, a full collection walks only what requests leave behind. Without
        # this, each full collection paused a worker for 30-140 ms: the whole tail of p99.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            with contextlib.suppress(Exception):
                await state.api_keys.flush_usage()
            await state.lookups.aclose()
            await es.close()
            for client in redis_clients:
                await client.aclose()

    return lifespan
