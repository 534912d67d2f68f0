"""What every request can reach: the process's shared clients and services, opened by the lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from api.key_cache import ApiKeyCache
from resources.config_store.guard import ConfigStoreGuard
from resources.config_store.history import CalculationHistory
from resources.config_store.previews import PreviewRepository
from resources.config_store.segments import SegmentRepository
from resources.serving.export import SegmentExport
from resources.serving.lookups import SegmentLookups
from resources.serving.readiness import Readiness
from resources.settings import Settings


@dataclass
class AppState:
    settings: Settings
    segments: SegmentRepository
    history: CalculationHistory
    previews: PreviewRepository
    config_store: ConfigStoreGuard  # every call to `segments`, `history` and `previews` goes through it
    api_keys: ApiKeyCache
    lookups: SegmentLookups
    export: SegmentExport
    readiness: Readiness
    archived_segment_ids: set[str] = field(default_factory=set)


async def get_state(request: Request) -> AppState:
    # async: FastAPI would run a plain `def` dependency in a worker thread, on every request.
    return request.app.state.segmentation


State = Annotated[AppState, Depends(get_state)]
