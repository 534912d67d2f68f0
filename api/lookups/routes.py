"""Lookups (read): which segments is this customer in, one customer or a batch of them?"""

from __future__ import annotations

import re
from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Request, Response
from pydantic import ValidationError

from api.auth import ReadKey, authenticate, key_checked_first
from api.errors import invalid_field, invalid_input, validation_details
from api.lookups.schemas import (
    CustomerSegments,
    CustomerSegmentsBatch,
    CustomerSegmentsBatchRequest,
)
from api.lookups.service import Lookups
from api.query_params import one_value_each
from api.state import AppState, State
from resources.names import ID_PATTERN
from resources.serving.filters import SegmentFilter
from resources.targeting import (
    MAX_FILTER_VALUES,
    TARGETING_ATTRIBUTES,
    InvalidLabelFilter,
    TargetingFilters,
    given_attributes,
)

router = APIRouter(tags=["lookups"], route_class=key_checked_first(admin=False))

CustomerId = Annotated[str, Path(pattern=ID_PATTERN, description="The customer's id.")]
NO_FILTER = SegmentFilter()
UNAVAILABLE = {503: {"description": "Elasticsearch is unavailable and the answer is not cached; see Retry-After."}}


def json_response(body: object) -> Response:
    # Our own answers are built from trusted data: serialized once, by orjson, without validation;
    # cached segment lists go in as they are (`orjson.Fragment`).
    return Response(orjson.dumps(body), media_type="application/json")


def segment_filter(segment_types: list[str], attributes: dict[str, str], labels: list[str]) -> SegmentFilter:
    try:
        return SegmentFilter.of(segment_types=segment_types, attributes=attributes, labels=labels)
    except InvalidLabelFilter as error:
        raise invalid_input([{"field": "label", "message": str(error)}]) from error


def targeting_filters(given: dict[str, str]) -> dict[str, str]:
    """The attribute filters of a query string, checked like the batch body's (422 naming the field)."""
    if not given:
        return given
    try:
        return given_attributes(TargetingFilters.model_validate(given))
    except ValidationError as error:
        raise invalid_input(validation_details(list(error.errors()), prefix=("query",))) from error


def _query_parameter(name: str, description: str, repeatable: bool = False) -> dict[str, object]:
    schema: dict[str, object] = {"type": "array", "items": {"type": "string"}} if repeatable else {"type": "string"}
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def _filter_parameter(name: str) -> dict[str, object]:
    """A targeting attribute's filter, documented with the constraints `TargetingFilters` checks."""
    field = TargetingFilters.model_json_schema()["properties"][name]
    text = next(option for option in field["anyOf"] if option.get("type") == "string")
    return {"name": name, "in": "query", "required": False, "description": field["description"], "schema": text}


# The filters are read from the query string by hand, on the hottest path there is: FastAPI's
# per-parameter validation cost more than the whole cached lookup. They are all free text, so
# nothing is lost; the OpenAPI document still describes them.
FILTER_PARAMETERS = [
    _query_parameter("segment_type", "Any of these types.", repeatable=True),
    *(_filter_parameter(name) for name in TARGETING_ATTRIBUTES),
    _query_parameter("label", "key:value; all must match.", repeatable=True),
]
SINGLE_VALUED = [p["name"] for p in FILTER_PARAMETERS if p["schema"]["type"] != "array"]


def query_filter(request: Request) -> SegmentFilter:
    query = request.query_params
    if not query:
        return NO_FILTER
    one_value_each(query, SINGLE_VALUED)
    attributes = targeting_filters({name: query[name] for name in TARGETING_ATTRIBUTES if name in query})
    for repeatable in ("segment_type", "label"):
        if len(query.getlist(repeatable)) > MAX_FILTER_VALUES:
            raise invalid_field(repeatable, f"at most {MAX_FILTER_VALUES} values")
    return segment_filter(query.getlist("segment_type"), attributes, query.getlist("label"))


CUSTOMER_ID_PARAMETER = {
    "name": "customer_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": ID_PATTERN, "description": "The customer's id.", "title": "Customer Id"},
    "description": "The customer's id.",
}
_VALID_ID = re.compile(ID_PATTERN)


@router.get(
    "/customers/{customer_id}/segments",
    response_model=CustomerSegments,
    responses=UNAVAILABLE,
    openapi_extra={"parameters": [CUSTOMER_ID_PARAMETER, *FILTER_PARAMETERS], "security": [{"HTTPBearer": []}]},
)
async def customer_segments(request: Request) -> Response:
    # The hottest route: its key and id are checked here rather than by FastAPI's dependency
    # injection, which took a fifth of a cached lookup's CPU (measured). The OpenAPI document still
    # describes both, and the authorization matrix and invalid-id tests call it like any other route.
    state: AppState = request.app.state.segmentation
    await authenticate(state, request)
    customer_id: str = request.path_params["customer_id"]
    if not _VALID_ID.fullmatch(customer_id):
        raise invalid_field("customer_id", f"String should match pattern '{ID_PATTERN}'")
    found = await Lookups(state).segments_of([customer_id], query_filter(request))
    return json_response({"customer_id": customer_id, "segments": found[customer_id]})


@router.post("/customers/segments:batch", response_model=CustomerSegmentsBatch, responses=UNAVAILABLE)
async def customers_segments(body: CustomerSegmentsBatchRequest, state: State, _: ReadKey) -> Response:
    """Up to 1,000 customers at once: cached ones from Redis, the rest in one Elasticsearch request.
    All or nothing: with Elasticsearch unavailable, a batch with any uncached customer answers 503."""
    selected = segment_filter(body.segment_type, given_attributes(body), body.label)
    return json_response({"results": await Lookups(state).segments_of(list(dict.fromkeys(body.customer_ids)), selected)})
