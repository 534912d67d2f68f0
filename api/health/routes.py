"""Liveness and readiness; no key needed."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.errors import ServiceUnavailable, error_response
from api.state import State

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
    return error_response(ServiceUnavailable(f"not ready: {', '.join(failed)}"), checks=checks)
