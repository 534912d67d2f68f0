"""Lookups (read): which segments is this customer in, one customer or a batch of them?"""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Query, Response

from api.deps import ReadKey, State
from api.errors import invalid_input
from api.lookup_schemas import CustomerSegmentsBatch, CustomerSegmentsBatchRequest
from api.schemas import CustomerSegments
from resources.segment_filters import InvalidLabelFilter, SegmentFilter
from segmentation_assets.segment_types.base import ID_PATTERN

router = APIRouter(tags=["lookups"])

CustomerId = Annotated[str, Path(pattern=ID_PATTERN, description="The customer's id.")]
UNAVAILABLE = {503: {"description": "Elasticsearch is unavailable and the answer is not cached; see Retry-After."}}


def json_response(body: object) -> Response:
    # Our own answers are built from trusted data: serialized once, by orjson, without validation.
    return Response(orjson.dumps(body), media_type="application/json")


def segment_filter(
    segment_types: list[str],
    store_id: str | None,
    category: str | None,
    city: str | None,
    country: str | None,
    labels: list[str],
) -> SegmentFilter:
    try:
        return SegmentFilter.of(
            segment_types=segment_types, store_id=store_id, category=category, city=city, country=country, labels=labels
        )
    except InvalidLabelFilter as error:
        raise invalid_input([{"field": "label", "message": str(error)}]) from error


@router.get("/customers/{customer_id}/segments", response_model=CustomerSegments, responses=UNAVAILABLE)
async def customer_segments(
    customer_id: CustomerId,
    state: State,
    _: ReadKey,
    segment_type: Annotated[list[str], Query(description="Any of these types.")] = [],  # noqa: B006
    store_id: str | None = None,
    category: str | None = None,
    city: str | None = None,
    country: str | None = None,
    label: Annotated[list[str], Query(description="key:value; all must match.")] = [],  # noqa: B006
) -> Response:
    selected = segment_filter(segment_type, store_id, category, city, country, label)
    segments = await state.lookups.customer_segments(customer_id)
    return json_response(
        {"customer_id": customer_id, "segments": selected.apply(segments, state.archived_segment_ids)}
    )


@router.post("/customers/segments:batch", response_model=CustomerSegmentsBatch, responses=UNAVAILABLE)
async def customers_segments(body: CustomerSegmentsBatchRequest, state: State, _: ReadKey) -> Response:
    """Up to 1,000 customers at once: cached ones from Redis, the rest in one Elasticsearch request.
    All or nothing: with Elasticsearch unavailable, a batch with any uncached customer answers 503."""
    selected = segment_filter(body.segment_type, body.store_id, body.category, body.city, body.country, body.label)
    found = await state.lookups.customers_segments(list(dict.fromkeys(body.customer_ids)))
    archived = state.archived_segment_ids
    return json_response({"results": {c: selected.apply(s, archived) for c, s in found.items()}})
