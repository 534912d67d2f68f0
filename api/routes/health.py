"""Liveness and readiness; no key needed."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import State
from api.errors import error_body

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up (it checks nothing else)."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={503: {"description": "At least one dependency failed its check; `checks` says which."}},
)
async def readyz(state: State) -> JSONResponse:
    """Elasticsearch (cluster health), Redis (PING) and PostgreSQL (SELECT 1), each within a second."""
    checks = await state.readiness.check()
    failed = [name for name, result in checks.items() if result != "ok"]
    if not failed:
        return JSONResponse({"status": "ready", "checks": checks})
    body: dict[str, Any] = {**error_body("unavailable", f"not ready: {', '.join(failed)}"), "checks": checks}
    return JSONResponse(body, status_code=503)
