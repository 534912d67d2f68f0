"""The FastAPI application: `create_app()` opens every client in its lifespan and closes them after."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from elasticsearch import AsyncElasticsearch
from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from api.deps import ApiKeyCache, AppState
from api.errors import install_error_handlers
from api.routes import health, lookups, segments
from resources.config_store.api_keys import ApiKeyRepository
from resources.config_store.database import session_factory
from resources.config_store.segments import SegmentRepository
from resources.segment_reader import SegmentReader
from resources.settings import Settings, get_settings

# SPEC 7: an archived segment leaves lookups within 60 s; refreshing well within that.
ARCHIVED_REFRESH_SECONDS = 10.0


async def _refresh_archived(state: AppState) -> None:
    while True:
        with contextlib.suppress(Exception):  # PostgreSQL down: keep the last known set
            state.archived_segment_ids = await run_in_threadpool(state.segments.archived_ids)
        await asyncio.sleep(ARCHIVED_REFRESH_SECONDS)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sessions = session_factory(settings.database_url)
        es = AsyncElasticsearch(settings.elasticsearch_url, request_timeout=2.0)
        state = AppState(
            settings=settings,
            segments=SegmentRepository(sessions),
            api_keys=ApiKeyCache(ApiKeyRepository(sessions)),
            reader=SegmentReader(es, settings.index_prefix),
        )
        app.state.segmentation = state
        refresher = asyncio.create_task(_refresh_archived(state))
        try:
            yield
        finally:
            refresher.cancel()
            await es.close()

    app = FastAPI(
        title="Segmentation API",
        version="1",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(segments.router, prefix="/v1")
    app.include_router(lookups.router, prefix="/v1")
    return app
