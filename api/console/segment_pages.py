"""What any signed-in key may see: the segment list, a segment's page (parameters, member count
over time, audit trail) and the customer lookup."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Request, Response

from api.config.service import SegmentConfigs
from api.console.audit_trail import changes
from api.console.chart import member_count_chart
from api.console.forms import FormErrors, errors_beside, param_fields
from api.console.overview import listed_segments, list_query
from api.console.rendering import ConsoleRoute, render
from api.console.segment_types import segment_type_named, segment_types
from api.console.sessions import Reader
from api.errors import InvalidInput, NotFound, invalid_field
from api.lookups.service import Lookups
from api.state import AppState, State
from resources.names import ID_PATTERN
from resources.serving.filters import SegmentFilter
from resources.serving.search_guard import SearchUnavailable

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

LIST_FILTERS = ("q", "segment_type", "status", "label")
HISTORY_SHOWN = 120  # partitions on a segment's page: four months of days
_VALID_ID = re.compile(ID_PATTERN)
DONE = {
    "created": "Segment created.",
    "exists": "This form had been sent already: here is the segment it created.",
    "saved": "Saved.",
    "paused": "Paused: it is no longer calculated; lookups keep serving its last calculation.",
    "resumed": "Resumed: it is calculated again, from the next refresh.",
    "archived": "Archived: lookups stop returning it within a minute. Its history stays.",
}


@router.get("/")
async def segment_list(request: Request, session: Reader, state: State) -> Response:
    filters = {name: request.query_params.get(name, "").strip() for name in LIST_FILTERS}
    rows: list[Any] = []
    next_url = None
    errors = FormErrors()
    try:
        rows, next_cursor = await listed_segments(
            state, list_query({**filters, "cursor": request.query_params.get("cursor")}), filters["q"]
        )
        if next_cursor:
            next_url = "/console/?" + urlencode({**{k: v for k, v in filters.items() if v}, "cursor": next_cursor})
    except InvalidInput as error:
        errors = errors_beside(error, ["segment_type", "status", "label", "cursor"])
    return render(
        request,
        "segments.html",
        session,
        rows=rows,
        filters=filters,
        errors=errors,
        types=[t["name"] for t in segment_types()],
        next_url=next_url,
        filtered=any(filters.values()),
    )


def checked_segment_id(segment_id: str) -> str:
    if not _VALID_ID.fullmatch(segment_id):
        raise NotFound(f"no segment {segment_id!r}")
    return segment_id


@router.get("/segments/{segment_id}")
async def segment_page(request: Request, segment_id: str, session: Reader, state: State) -> Response:
    configs = SegmentConfigs(state)
    segment = await configs.get(checked_segment_id(segment_id))
    calculations, served_known = await _history(state, segment.id)
    entries = await configs.audit(segment.id)
    schema = (segment_type_named(segment.segment_type) or {}).get("params_schema", {})
    titles = {f.key: f.label for f in param_fields(schema) if f.key in segment.params}  # the form's order
    titles |= {key: key for key in segment.params if key not in titles}
    return render(
        request,
        "segment.html",
        session,
        segment=segment,
        params=[(title, segment.params[key]) for key, title in titles.items()],
        calculations=calculations,
        served_known=served_known,
        chart=member_count_chart(calculations),
        audit=[(entry, changes(entry)) for entry in reversed(entries)],
        notice=DONE.get(request.query_params.get("done", "")),
    )


async def _history(state: AppState, segment_id: str) -> tuple[list[dict[str, Any]], bool]:
    """The segment's calculations, newest first; with Elasticsearch unavailable, without saying
    which one is served (the flag says whether that is known), rather than no page at all."""
    try:
        return (await Lookups(state).history(segment_id, HISTORY_SHOWN))["calculations"], True
    except SearchUnavailable:
        calculations = await state.config_store.run(state.history.of_segment, segment_id, limit=HISTORY_SHOWN)
        return [{**c.model_dump(mode="json"), "served": None} for c in calculations], False


@router.get("/customers")
async def customer_lookup(request: Request, session: Reader, state: State) -> Response:
    customer_id = request.query_params.get("customer_id", "").strip()
    segments = None
    errors = FormErrors()
    if customer_id:
        try:
            if not _VALID_ID.fullmatch(customer_id):
                raise invalid_field(
                    "customer_id",
                    "not a customer id: letters, digits and _.:@- (at most 128), starting with a letter or digit",
                )
            found = await Lookups(state).segments_of([customer_id], SegmentFilter())
            segments = orjson.loads(orjson.dumps(found[customer_id]))
        except InvalidInput as error:
            errors = errors_beside(error, ["customer_id"])
    return render(
        request,
        "customers.html",
        session,
        customer_id=customer_id,
        segments=segments,
        errors=errors,
    )


@router.get("/{path:path}")
async def not_found(path: str, session: Reader) -> Response:
    raise NotFound("There is no such page in the console.")
