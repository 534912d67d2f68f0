"""Bodies of the lookup endpoints.

Responses are built with orjson straight from what Elasticsearch or the cache gave; these models
document them in the OpenAPI document and validate requests, never our own answers.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from resources.names import ID_PATTERN
from resources.targeting import FilterValues, SegmentAnswer, TargetingFilters

MAX_BATCH_CUSTOMERS = 1000

CustomerIdText = Annotated[str, StringConstraints(pattern=ID_PATTERN)]


class CustomerSegmentsBatchRequest(TargetingFilters):
    """The customers, and the same filters as a single lookup's: the targeting attributes given must equal."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customer_ids: list[CustomerIdText] = Field(max_length=MAX_BATCH_CUSTOMERS, description="Up to 1,000 customer ids.")
    segment_type: FilterValues = Field(default_factory=list, description="Any of these types (up to 20).")
    label: FilterValues = Field(default_factory=list, description="key:value; all must match (up to 20).")


class CustomerSegments(BaseModel):
    customer_id: str
    segments: list[SegmentAnswer]


class CustomerSegmentsBatch(BaseModel):
    results: dict[str, list[SegmentAnswer]]


class SegmentMembership(BaseModel):
    segment_id: str
    customer_id: str
    member: bool
    calculated_at: str


class SegmentMembersPage(BaseModel):
    segment_id: str
    customer_ids: list[str]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class SegmentStats(BaseModel):
    segment_id: str
    member_count: int
    calculated_at: str
    index: str = Field(description="The Elasticsearch index that serves the segment's last calculation.")


class CalculationEntry(BaseModel):
    partition: str
    calculated_at: str
    member_count: int
    entered: int | None = Field(description="Members not in the segment's calculation of the latest earlier "
                                "partition (all of them at its first); null when that calculation's results are gone.")
    exited: int | None = Field(description="Members of that earlier calculation no longer in this one.")
    index: str | None = Field(description="The Elasticsearch index holding this calculation; null if never indexed.")
    served: bool = Field(description="Whether this calculation is the one lookups serve now (behind the alias).")


class SegmentHistory(BaseModel):
    segment_id: str
    calculations: list[CalculationEntry] = Field(description="One per calculated partition (its latest calculation), newest first.")
