"""A segment's calculations (read): membership of one customer, every member paged, stats, history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from api.auth import ReadKey
from api.lookups.routes import UNAVAILABLE, CustomerId, json_response
from api.lookups.schemas import SegmentHistory, SegmentMembership, SegmentMembersPage, SegmentStats
from api.lookups.service import Lookups
from api.query_params import one_value_each
from api.state import State
from resources.names import ID_PATTERN

router = APIRouter(tags=["lookups"])

SegmentId = Annotated[str, Path(pattern=ID_PATTERN, description="The segment's id.")]
MAX_PAGE = 10_000
NOT_SERVED = {404: {"description": "No such segment is served (unknown, archived, or not calculated yet)."}}


@router.get(
    "/segments/{segment_id}/members/{customer_id}",
    response_model=SegmentMembership,
    responses={**NOT_SERVED, **UNAVAILABLE},
)
async def segment_membership(segment_id: SegmentId, customer_id: CustomerId, state: State, _: ReadKey) -> Response:
    return json_response(await Lookups(state).membership(segment_id, customer_id))


@router.get(
    "/segments/{segment_id}/members",
    response_model=SegmentMembersPage,
    responses={**NOT_SERVED, **UNAVAILABLE, 410: {"description": "The calculation the cursor pages through is gone."}},
)
async def segment_members(
    request: Request,
    segment_id: SegmentId,
    state: State,
    _: ReadKey,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Members per page.")] = 1000,
    cursor: Annotated[str | None, Query(max_length=1024, description="`next_cursor` of the previous page.")] = None,
) -> Response:
    """Every member once, in a stable order. A page sequence keeps reading the calculation it
    started on, even after the alias moves, until that index is deleted (then 410)."""
    one_value_each(request.query_params, ("limit", "cursor"))
    page = await Lookups(state).members_page(segment_id, cursor, limit)
    next_cursor = page.next_cursor.encode() if page.next_cursor else None
    return json_response({"segment_id": segment_id, "customer_ids": page.customer_ids, "next_cursor": next_cursor})


@router.get("/segments/{segment_id}/stats", response_model=SegmentStats, responses={**NOT_SERVED, **UNAVAILABLE})
async def segment_stats(segment_id: SegmentId, state: State, _: ReadKey) -> Response:
    return json_response(await Lookups(state).stats(segment_id))


@router.get("/segments/{segment_id}/history", response_model=SegmentHistory, responses={**UNAVAILABLE})
async def segment_history(
    segment_id: SegmentId,
    state: State,
    _: ReadKey,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="The newest partitions to return.")] = 1000,
) -> Response:
    """Every calculated partition of the segment, archived or not: 404 only for an unknown segment."""
    return json_response(await Lookups(state).history(segment_id, limit))
