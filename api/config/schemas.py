"""Request and response bodies of the API."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_origin

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from resources.config_store.segments import AuditEntry, Labels, SegmentStatus
from resources.config_store.segments import (
    Segment as SegmentPublic,  # the stored segment is the public shape
)
from resources.targeting import FilterValues, TargetingFilters, VisibleLine, VisibleLines

# One line of visible text; a description may span lines.
SegmentName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), VisibleLine]
Description = Annotated[str, StringConstraints(max_length=2000), VisibleLines]
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


class SegmentListQuery(TargetingFilters):
    """`GET /v1/segments`'s query: the targeting attributes given must equal, and these."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    segment_type: str | None = Field(default=None, max_length=64)
    status: list[SegmentStatus] = Field(default_factory=list, description="Any of these; default active and paused.")
    label: FilterValues = Field(default_factory=list, description="key:value; all must match (up to 20).")
    limit: int = Field(default=100, ge=1, le=500)
    cursor: str | None = Field(default=None, max_length=512, description="next_cursor of the previous page.")

    @classmethod
    def single_valued(cls) -> list[str]:
        """The parameters that take one value: a second one is an error, not silently the last."""
        return [name for name, info in cls.model_fields.items() if get_origin(info.annotation) is not list]


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

