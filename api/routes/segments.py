"""Segment config management (admin): create, read."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from api.deps import AdminKey, State
from api.errors import NotFound, invalid_input, validation_details
from api.schemas import SegmentCreate, SegmentPublic
from resources.config_store.segments import SegmentNotFound
from segmentation_assets.segment_types import SEGMENT_TYPES

router = APIRouter(tags=["segments"])


@router.get("/segment-types")
async def list_segment_types(_: AdminKey) -> dict[str, Any]:
    return {
        "segment_types": [
            {"name": t.name, "description": t.description, "params_schema": t.json_schema()}
            for t in SEGMENT_TYPES.values()
        ]
    }


@router.post("/segments", status_code=201, response_model=SegmentPublic)
async def create_segment(body: SegmentCreate, state: State, key: AdminKey) -> SegmentPublic:
    segment_type = SEGMENT_TYPES.get(body.segment_type)
    if segment_type is None:
        raise invalid_input(
            [{"field": "segment_type", "message": f"unknown segment type; known: {', '.join(sorted(SEGMENT_TYPES))}"}]
        )
    try:
        params = segment_type.parse_params(body.params)
    except ValidationError as error:
        raise invalid_input(validation_details(list(error.errors()), prefix=("params",))) from error
    segment = await run_in_threadpool(
        state.segments.create,
        name=body.name,
        segment_type=body.segment_type,
        params=params.model_dump(mode="json", exclude_none=True),
        targeting=params.targeting(),
        labels=body.labels,
        description=body.description,
        status=body.status,
        actor=key.name,
    )
    return segment


@router.get("/segments/{segment_id}", response_model=SegmentPublic)
async def get_segment(segment_id: str, state: State, _: AdminKey) -> SegmentPublic:
    try:
        segment = await run_in_threadpool(state.segments.get, segment_id)
    except SegmentNotFound as error:
        raise NotFound(f"no segment {segment_id!r}") from error
    return segment
