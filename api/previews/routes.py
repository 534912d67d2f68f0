"""Previews (admin): ask how many members a segment would have, then read the answer.
Thin: each route parses its input, calls `Previews` (api/previews/service.py), sets headers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from api.auth import AdminKey, key_checked_first
from api.previews.schemas import PreviewCreate, PreviewPublic
from api.previews.service import PreviewsService

router = APIRouter(tags=["previews"], route_class=key_checked_first(admin=True))

PreviewId = Annotated[str, Path(max_length=128, description="The preview's id, from its request.")]


@router.post("/segments:preview", status_code=202, response_model=PreviewPublic)
async def request_preview(body: PreviewCreate, previews: PreviewsService, key: AdminKey, response: Response) -> dict[str, Any]:
    """Queues a preview: the exact member count and a sample that a segment with these params would
    have for the partition (default: the latest closed one), computed by a Dagster run. Validated
    as `POST /v1/segments` validates. Creates no segment and changes nothing served."""
    preview = await previews.request(body.segment_type, body.params, body.partition, key)
    response.headers["Location"] = f"/v1/previews/{preview['preview_id']}"
    return preview


@router.get("/previews/{preview_id}", response_model=PreviewPublic)
async def get_preview(preview_id: PreviewId, previews: PreviewsService, _: AdminKey) -> dict[str, Any]:
    """The preview's state; `member_count` and `sample_customer_ids` once `done`, `error` once
    `failed`. Kept at least 24 hours."""
    return await previews.get(preview_id)
