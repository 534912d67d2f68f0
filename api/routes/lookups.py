"""Lookups (read): which segments is this customer in?"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from api.deps import ReadKey, State
from api.errors import invalid_input
from api.schemas import CustomerSegments
from segmentation_assets.segment_types.base import ID_PATTERN

router = APIRouter(tags=["lookups"])

CustomerId = Annotated[str, Path(pattern=ID_PATTERN, description="The customer's id.")]


def _parse_labels(labels: list[str]) -> dict[str, str]:
    parsed = {}
    for label in labels:
        key, sep, value = label.partition(":")
        if not sep or not key or not value:
            raise invalid_input([{"field": "label", "message": f"{label!r} is not of the form key:value"}])
        parsed[key] = value
    return parsed


def matches_filters(
    segment: dict[str, Any],
    *,
    segment_types: list[str],
    attributes: dict[str, str | None],
    labels: dict[str, str],
) -> bool:
    if segment_types and segment["segment_type"] not in segment_types:
        return False
    if any(value is not None and segment.get(name) != value for name, value in attributes.items()):
        return False
    segment_labels = segment.get("labels") or {}
    return all(segment_labels.get(k) == v for k, v in labels.items())


@router.get("/customers/{customer_id}/segments", response_model=CustomerSegments)
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
) -> dict[str, Any]:
    labels = _parse_labels(label)
    attributes = {"store_id": store_id, "category": category, "city": city, "country": country}
    segments = [
        s
        for s in await state.reader.customer_segments(customer_id)
        if s["segment_id"] not in state.archived_segment_ids
        and matches_filters(s, segment_types=segment_type, attributes=attributes, labels=labels)
    ]
    return {"customer_id": customer_id, "segments": segments}
