"""Request and response bodies of previews."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PreviewStatus = Literal["queued", "running", "done", "failed"]


class PreviewCreate(BaseModel):
    # Strict, like SegmentCreate: JSON types must match.
    model_config = ConfigDict(extra="forbid", strict=True)

    segment_type: str = Field(min_length=1, max_length=64)
    params: dict[str, Any]
    partition: str | None = Field(
        default=None,
        max_length=32,
        description="A closed partition (`YYYY-MM-DD`, or `YYYY-MM-DD-HH:00` for hourly partitions); "
        "default: the latest closed one.",
    )


class PreviewPublic(BaseModel):
    preview_id: str
    status: PreviewStatus = Field(description="`queued`, `running`, `done` or `failed`.")
    segment_type: str
    params: dict[str, Any] = Field(description="As validated, defaults filled in.")
    partition: str
    member_count: int | None = Field(description="Exact; null until `done`.")
    sample_customer_ids: list[str] | None = Field(
        description="Up to 20 members, the smallest customer ids; null until `done`."
    )
    error: str | None = Field(description="Why the preview failed; null unless `failed`.")
    requested_at: datetime
    finished_at: datetime | None
