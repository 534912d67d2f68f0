"""A segment's served calculation (read): membership of one customer, every member paged, stats."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from api.auth import ReadKey
from api.state import AppState, State
from api.errors import ApiError, NotFound, invalid_input
from api.lookups.schemas import SegmentMembersPage, SegmentMembership, SegmentStats
from api.lookups.routes import UNAVAILABLE, CustomerId, json_response
from api.config.input import one_value_each
from resources.serving.export import ExportCursor, InvalidCursor
from resources.serving.reader import IndexGone
from resources.names import ID_PATTERN

router = APIRouter(tags=["lookups"])

SegmentId = Annotated[str, Path(pattern=ID_PATTERN, description="The segment's id.")]
MAX_PAGE = 10_000
NOT_SERVED = {404: {"description": "No such segment is served (unknown, archived, or not calculated yet)."}}


class CursorExpired(ApiError):
    status_code = 410
    code = "cursor_expired"


async def _served(state: AppState, segment_id: str) -> dict[str, Any]:
    """The served calculation's summary, or 404: unknown, archived, or not calculated yet."""
    if segment_id in state.archived_segment_ids:
        raise NotFound(f"segment {segment_id!r} is archived")
    summary = await state.lookups.segment_summary(segment_id)
    if summary is None:
        raise NotFound(f"segment {segment_id!r} has no served calculation (unknown, or not calculated yet)")
    return summary


@router.get(
    "/segments/{segment_id}/members/{customer_id}",
    response_model=SegmentMembership,
    responses={**NOT_SERVED, **UNAVAILABLE},
)
async def segment_membership(segment_id: SegmentId, customer_id: CustomerId, state: State, _: ReadKey) -> Response:
    if segment_id in state.archived_segment_ids:
        raise NotFound(f"segment {segment_id!r} is archived")
    # The customer's cached segment list answers most calls without asking about the segment.
    for segment in await state.lookups.customer_segments(customer_id):
        if segment["segment_id"] == segment_id:
            return json_response(
                {"segment_id": segment_id, "customer_id": customer_id, "member": True, "calculated_at": segment["calculated_at"]}
            )
    summary = await _served(state, segment_id)
    # The list and the summary are two reads: across an alias switch they can come from two
    # calculations (one cached, one fresh). The summary's own index answers for its calculation.
    member = await state.lookups.holds(summary["index"], segment_id, customer_id)
    return json_response(
        {"segment_id": segment_id, "customer_id": customer_id, "member": member, "calculated_at": summary["calculated_at"]}
    )


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
    if cursor is None:
        summary = await _served(state, segment_id)
        start = ExportCursor(summary["index"], segment_id, 0, 0)
    else:
        if segment_id in state.archived_segment_ids:
            raise NotFound(f"segment {segment_id!r} is archived")
        try:
            start = ExportCursor.decode(cursor, segment_id=segment_id, index_prefix=state.settings.index_prefix)
        except InvalidCursor as error:
            raise invalid_input([{"field": "cursor", "message": str(error)}]) from error
    try:
        page = await state.export.page(start, limit)
    except IndexGone as error:
        raise CursorExpired(
            f"the calculation this cursor pages through ({start.index}) is no longer kept; start again without a cursor"
        ) from error
    except InvalidCursor as error:
        raise invalid_input([{"field": "cursor", "message": str(error)}]) from error
    return json_response(
        {
            "segment_id": segment_id,
            "customer_ids": page.customer_ids,
            "next_cursor": page.next_cursor.encode() if page.next_cursor else None,
        }
    )


@router.get("/segments/{segment_id}/stats", response_model=SegmentStats, responses={**NOT_SERVED, **UNAVAILABLE})
async def segment_stats(segment_id: SegmentId, state: State, _: ReadKey) -> Response:
    summary = await _served(state, segment_id)
    return json_response(
        {
            "segment_id": segment_id,
            "member_count": summary["member_count"],
            "calculated_at": summary["calculated_at"],
            "index": summary["index"],
        }
    )
