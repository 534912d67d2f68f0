"""Request and response bodies of the API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from typing_extensions import Annotated

from resources.config_store.segments import AuditEntry, Labels
from resources.config_store.segments import Segment as SegmentPublic  # the stored segment is the public shape

# One line of printable text; a description may span lines. PostgreSQL text holds no NUL either way.
SegmentName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")
]
Description = Annotated[str, StringConstraints(max_length=2000, pattern=r"^[^\x00]*$")]
WritableStatus = Literal["active", "paused"]


class SegmentCreate(BaseModel):
    # Strict: JSON types must match (`"name": 5` is an error, not "5").
    model_config = ConfigDict(extra="forbid", strict=True)

    name: SegmentName
    segment_type: str = Field(min_length=1, max_length=64)
    params: dict[str, Any]
    labels: Labels = Field(default_factory=dict)
    description: Description | None = None
    status: WritableStatus = "active"


class SegmentUpdate(BaseModel):
    """Top-level fields given replace the stored ones (`params` and `labels` whole); others stay.
    `segment_type` is fixed at creation; it may be sent only with its current value."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: SegmentName | None = None
    description: Description | None = None
    params: dict[str, Any] | None = None
    labels: Labels | None = None
    status: WritableStatus | None = Field(default=None, description="`active` or `paused`; DELETE archives.")
    segment_type: str | None = None

    @field_validator("name", "params", "labels", "status", "segment_type", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may not be null (leave the field out to keep it)")
        return value


class SegmentPage(BaseModel):
    segments: list[SegmentPublic]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class SegmentTypePublic(BaseModel):
    name: str
    description: str
    params_schema: dict[str, Any] = Field(description="JSON Schema of the type's `params`.")


class SegmentTypes(BaseModel):
    segment_types: list[SegmentTypePublic]


class AuditTrail(BaseModel):
    segment_id: str
    entries: list[AuditEntry] = Field(description="Every change, oldest first.")


class CustomerSegment(BaseModel):
    segment_id: str
    name: str | None
    segment_type: str
    store_id: str | None
    category: str | None
    city: str | None
    country: str | None
    labels: dict[str, str]
    calculated_at: datetime


class CustomerSegments(BaseModel):
    customer_id: str
    segments: list[CustomerSegment]
