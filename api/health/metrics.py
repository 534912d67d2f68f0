"""Prometheus text of the serving metrics (every worker's, in multiprocess mode); no key needed."""

from __future__ import annotations

from fastapi import APIRouter, Response

from resources.serving.metrics import metrics_payload

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics() -> Response:
    payload, content_type = metrics_payload()
    return Response(payload, media_type=content_type)
