"""The FastAPI application: `create_app()` opens every client in its lifespan and closes them after."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from fastapi import FastAPI

from api.config import routes as config_routes
from api.errors import install_error_handlers
from api.health import metrics as metrics_routes
from api.health import routes as health_routes
from api.key_cache import ApiKeyCache
from api.lookups import members as member_routes
from api.lookups import routes as lookup_routes
from api.middleware.body_limit import (
    CONFIG_BODY_MAX_BYTES,
    DEFAULT_BODY_MAX_BYTES,
    RequestBodyLimit,
)
from api.middleware.request_context import RequestContext
from api.middleware.request_metrics import RequestMetrics
from api.openapi_errors import ADMIN_ERRORS, LOOKUP_ERRORS
from api.state import AppState
from resources.config_store.api_keys import ApiKeyRepository
from resources.config_store.database import engine_for, session_factory
from resources.config_store.guard import ConfigStoreGuard
from resources.config_store.segments import SegmentRepository
from resources.json_logs import configure_logging
from resources.serving.cache import GenerationFile, LookupCache
from resources.serving.export import SegmentExport
from resources.serving.lookups import SegmentLookups
from resources.serving.reader import SegmentReader
from resources.serving.readiness import Readiness
from resources.serving.search_guard import SearchGuard, breaker_factory, search_client
from resources.serving.served_state import keep_served_state
from resources.settings import PROJECT_ROOT, Settings, get_settings

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


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sessions = session_factory(settings.database_url)
        es = search_client(settings.elasticsearch_url, settings.api_search_budget_seconds)
        redis = aioredis.Redis.from_url(
            settings.redis_url,
            socket_timeout=settings.api_redis_timeout_seconds,
            socket_connect_timeout=settings.api_redis_timeout_seconds,
        )
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
        )
        config_store = ConfigStoreGuard(breakers, open_seconds=settings.api_breaker_open_seconds)
        state = AppState(
            settings=settings,
            segments=SegmentRepository(sessions),
            config_store=config_store,
            api_keys=ApiKeyCache(ApiKeyRepository(sessions), config_store=config_store),
            lookups=SegmentLookups(reader, cache, near_entries=settings.lookup_near_cache_entries),
            export=SegmentExport(reader, settings.api_export_budget_seconds),
            readiness=Readiness(es, redis, engine_for(settings.database_url)),
        )
        app.state.segmentation = state
        refresher = asyncio.create_task(_refresh_archived(state))
        usage_writer = asyncio.create_task(_record_key_usage(state))
        served_state = asyncio.create_task(keep_served_state(es, settings.index_prefix))
        # The ~180,000 objects made by imports and startup live as long as the process: out of the
        # collector's sight, a full collection walks only what requests leave behind. Without
        # this, each full collection paused a worker for 30-140 ms: the whole tail of p99.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            refresher.cancel()
            usage_writer.cancel()
            served_state.cancel()
            with contextlib.suppress(Exception):
                await state.api_keys.flush_usage()
            await cache.drain()
            await es.close()
            await redis.aclose()

    app = FastAPI(
        title="Segmentation API",
        version="1",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(
        RequestBodyLimit, default_max_bytes=DEFAULT_BODY_MAX_BYTES, max_bytes_by_prefix={"/v1/segments": CONFIG_BODY_MAX_BYTES}
    )

    app.add_middleware(RequestMetrics)
    app.add_middleware(RequestContext)  # outermost: its request id is bound for everything inside
    # Routes are matched in order: the lookups, the hottest, before the config management ones.
    app.include_router(health_routes.router)
    app.include_router(metrics_routes.router)
    app.include_router(lookup_routes.router, prefix="/v1", responses=LOOKUP_ERRORS)
    app.include_router(member_routes.router, prefix="/v1", responses=LOOKUP_ERRORS)
    app.include_router(config_routes.router, prefix="/v1", responses=ADMIN_ERRORS)
    return app


OPENAPI_FILE = PROJECT_ROOT / "docs" / "openapi.json"


def render_openapi() -> str:
    """The OpenAPI document as served at /openapi.json, as `docs/openapi.json` holds it.

    Building it opens no client: the lifespan does not run."""
    return json.dumps(create_app(Settings()).openapi(), indent=2, ensure_ascii=False) + "\n"
