"""Segment config management (admin): types, create, list, read, update, archive, audit.
Thin: each route parses its input, calls `SegmentConfigs` (api/config/service.py), sets headers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response

from api.auth import AdminKey, key_checked_first
from api.config.input import etag, expected_version
from api.config.schemas import (
    AuditTrail,
    SegmentCreate,
    SegmentListQuery,
    SegmentPage,
    SegmentPublic,
    SegmentTypes,
    SegmentUpdate,
)
from api.config.service import Configs
from api.query_params import one_value_each
from resources.names import ID_PATTERN

router = APIRouter(tags=["segments"], route_class=key_checked_first(admin=True))

SegmentId = Annotated[str, Path(pattern=ID_PATTERN, description="The segment's id.")]
IfMatch = Annotated[
    str | None, Header(alias="If-Match", description="The version the change is based on: the ETag of a GET.")
]


@router.get("/segment-types", response_model=SegmentTypes)
async def list_segment_types(_: AdminKey, configs: Configs) -> dict[str, Any]:
    return {"segment_types": configs.segment_types()}


@router.post("/segments", status_code=201, response_model=SegmentPublic)
async def create_segment(body: SegmentCreate, configs: Configs, key: AdminKey, response: Response) -> SegmentPublic:
    segment = await configs.create(body, key)
    response.headers["ETag"] = etag(segment.version)
    response.headers["Location"] = f"/v1/segments/{segment.id}"
    return segment


@router.get("/segments", response_model=SegmentPage)
async def list_segments(
    request: Request, configs: Configs, _: AdminKey, query: Annotated[SegmentListQuery, Query()]
) -> dict[str, Any]:
    one_value_each(request.query_params, SegmentListQuery.single_valued())
    return await configs.page(query)


@router.get("/segments/{segment_id}", response_model=SegmentPublic)
async def get_segment(segment_id: SegmentId, configs: Configs, _: AdminKey, response: Response) -> SegmentPublic:
    segment = await configs.get(segment_id)
    response.headers["ETag"] = etag(segment.version)
    return segment


@router.patch("/segments/{segment_id}", response_model=SegmentPublic)
async def update_segment(
    segment_id: SegmentId, body: SegmentUpdate, configs: Configs, key: AdminKey, response: Response, if_match: IfMatch = None
) -> SegmentPublic:
    """Needs `If-Match: <version>`: 428 without it, 412 (with the current version) when stale."""
    segment = await configs.update(segment_id, body, expected_version(if_match), key)
    response.headers["ETag"] = etag(segment.version)
    return segment


@router.delete("/segments/{segment_id}", status_code=204, response_class=Response)
async def archive_segment(segment_id: SegmentId, configs: Configs, key: AdminKey, if_match: IfMatch = None) -> Response:
    """Archives the segment (its history stays); archiving it again changes nothing (204).
    `If-Match` is optional here; when given, a stale version answers 412."""
    await configs.archive(segment_id, expected_version(if_match) if if_match is not None else None, key)
    return Response(status_code=204)


@router.get("/segments/{segment_id}/audit", response_model=AuditTrail)
async def segment_audit(segment_id: SegmentId, configs: Configs, _: AdminKey) -> dict[str, Any]:
    return {"segment_id": segment_id, "entries": await configs.audit(segment_id)}
