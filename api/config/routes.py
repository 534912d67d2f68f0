"""Segment config management (admin): types, create, list, read, update, archive, audit."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response

from api.auth import AdminKey, key_checked_first
from api.state import AppState, State
from api.errors import Conflict, NotFound, PreconditionFailed, invalid_field
from api.config.schemas import (
    AuditTrail,
    SegmentCreate,
    SegmentListQuery,
    SegmentPage,
    SegmentPublic,
    SegmentTypes,
    SegmentUpdate,
)
from api.config.input import (
    decode_cursor,
    encode_cursor,
    etag,
    expected_version,
    label_filters,
    one_value_each,
    require_storable,
    validated_params,
)
from resources.config_store.segments import (
    SegmentArchived,
    SegmentFilters,
    SegmentNotFound,
    SegmentStatus,
    StaleVersion,
)
from segmentation_assets.core.segment_types import SEGMENT_TYPES
from resources.names import ID_PATTERN
from resources.targeting import TARGETING_ATTRIBUTES, TargetingAttributes

router = APIRouter(tags=["segments"], route_class=key_checked_first(admin=True))

SegmentId = Annotated[str, Path(pattern=ID_PATTERN, description="The segment's id.")]
IfMatch = Annotated[
    str | None, Header(alias="If-Match", description="The version the change is based on: the ETag of a GET.")
]
# Listing without a status filter leaves archived segments out; ask for them by name.
LISTED_BY_DEFAULT: tuple[SegmentStatus, ...] = ("active", "paused")


@router.get("/segment-types", response_model=SegmentTypes)
async def list_segment_types(_: AdminKey) -> dict[str, Any]:
    return {
        "segment_types": [
            {"name": t.name, "description": t.description, "params_schema": t.json_schema()}
            for t in SEGMENT_TYPES.values()
        ]
    }


@router.post("/segments", status_code=201, response_model=SegmentPublic)
async def create_segment(body: SegmentCreate, state: State, key: AdminKey, response: Response) -> SegmentPublic:
    params, targeting = validated_params(body.segment_type, body.params)
    require_storable(name=body.name, description=body.description, labels=body.labels)
    segment = await state.config_store.run(
        state.segments.create,
        name=body.name,
        segment_type=body.segment_type,
        params=params,
        targeting=targeting,
        labels=body.labels,
        description=body.description,
        status=body.status,
        actor=key.name,
    )
    response.headers["ETag"] = etag(segment.version)
    response.headers["Location"] = f"/v1/segments/{segment.id}"
    return segment


@router.get("/segments", response_model=SegmentPage)
async def list_segments(
    request: Request, state: State, _: AdminKey, query: Annotated[SegmentListQuery, Query()]
) -> dict[str, Any]:
    one_value_each(request.query_params, SegmentListQuery.single_valued())
    if query.segment_type is not None and query.segment_type not in SEGMENT_TYPES:
        raise invalid_field("segment_type", f"unknown segment type; known: {', '.join(sorted(SEGMENT_TYPES))}")
    filters = SegmentFilters(
        segment_type=query.segment_type,
        statuses=tuple(dict.fromkeys(query.status)) or LISTED_BY_DEFAULT,
        attributes=TargetingAttributes.model_validate(query.model_dump(include=set(TARGETING_ATTRIBUTES))),
        labels=label_filters(query.label),
    )
    segments, more = await state.config_store.run(
        state.segments.list, filters, after_id=decode_cursor(query.cursor), limit=query.limit
    )
    return {"segments": segments, "next_cursor": encode_cursor(segments[-1].id) if more else None}


@router.get("/segments/{segment_id}", response_model=SegmentPublic)
async def get_segment(segment_id: SegmentId, state: State, _: AdminKey, response: Response) -> SegmentPublic:
    segment = await _current(state, segment_id)
    response.headers["ETag"] = etag(segment.version)
    return segment


@router.patch("/segments/{segment_id}", response_model=SegmentPublic)
async def update_segment(
    segment_id: SegmentId, body: SegmentUpdate, state: State, key: AdminKey, response: Response, if_match: IfMatch = None
) -> SegmentPublic:
    """Needs `If-Match: <version>`: 428 without it, 412 (with the current version) when stale."""
    version = expected_version(if_match)
    current = await _current(state, segment_id)
    # Preconditions before the content: a stale or archived segment is reported as such.
    _check_writable(current, version)
    if body.segment_type is not None and body.segment_type != current.segment_type:
        raise invalid_field("segment_type", f"cannot change (it is {current.segment_type!r}); create a new segment")
    changes = body.model_dump(exclude_unset=True, exclude={"segment_type"})
    require_storable(**{k: v for k, v in changes.items() if k != "params"})
    if "params" in changes:
        changes["params"], targeting = validated_params(current.segment_type, changes["params"])
        changes.update(targeting)
    try:
        segment = await state.config_store.run(
            state.segments.update, segment_id, expected_version=version, changes=changes, actor=key.name
        )
    except (SegmentArchived, StaleVersion) as error:  # a concurrent writer won the compare-and-set
        _check_writable(error.current, version)
        raise _changed_concurrently(segment_id) from error
    response.headers["ETag"] = etag(segment.version)
    return segment


@router.delete("/segments/{segment_id}", status_code=204, response_class=Response)
async def archive_segment(segment_id: SegmentId, state: State, key: AdminKey, if_match: IfMatch = None) -> Response:
    """Archives the segment (its history stays); archiving it again changes nothing (204).
    `If-Match` is optional here; when given, a stale version answers 412."""
    version = expected_version(if_match) if if_match is not None else None
    try:
        segment = await state.config_store.run(state.segments.archive, segment_id, actor=key.name, expected_version=version)
    except SegmentNotFound as error:
        raise NotFound(f"no segment {segment_id!r}") from error
    except StaleVersion as error:
        # Not `_check_writable`: archiving an archived segment is no conflict, but a stale version is.
        _check_version(error.current, version)
        raise _changed_concurrently(segment_id) from error
    _hide_from_lookups_now(state, segment.id)
    return Response(status_code=204)


@router.get("/segments/{segment_id}/audit", response_model=AuditTrail)
async def segment_audit(segment_id: SegmentId, state: State, _: AdminKey) -> dict[str, Any]:
    try:
        entries = await state.config_store.run(state.segments.audit, segment_id)
    except SegmentNotFound as error:
        raise NotFound(f"no segment {segment_id!r}") from error
    return {"segment_id": segment_id, "entries": entries}


async def _current(state: AppState, segment_id: str) -> SegmentPublic:
    try:
        return await state.config_store.run(state.segments.get, segment_id)
    except SegmentNotFound as error:
        raise NotFound(f"no segment {segment_id!r}") from error


def _check_writable(current: SegmentPublic, expected: int | None) -> None:
    if current.status == "archived":
        raise Conflict(
            f"segment {current.id!r} is archived; archived segments cannot be changed",
            details={"current_version": current.version},
        )
    _check_version(current, expected)


def _check_version(current: SegmentPublic, expected: int | None) -> None:
    if expected is not None and current.version != expected:
        raise PreconditionFailed(
            f"segment {current.id!r} is at version {current.version}, not {expected}: read it again and retry",
            details={"current_version": current.version},
            headers={"ETag": etag(current.version)},
        )


def _changed_concurrently(segment_id: str) -> Conflict:
    return Conflict(f"segment {segment_id!r} kept changing while this request ran; retry")


def _hide_from_lookups_now(state: AppState, segment_id: str) -> None:
    # This process at once; the others within their refresh of archived ids (api/main.py).
    state.archived_segment_ids = state.archived_segment_ids | {segment_id}
