"""Request and response bodies of the API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from resources.config_store.segments import Labels
from resources.config_store.segments import Segment as SegmentPublic  # the stored segment is the public shape


class SegmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    segment_type: str = Field(min_length=1, max_length=64)
    params: dict[str, Any]
    labels: Labels = Field(default_factory=dict)
    description: str | None = Field(default=None, max_length=2000)
    status: Literal["active", "paused"] = "active"


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
