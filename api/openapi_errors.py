"""The API's error answers as the OpenAPI document describes them: every `/v1` operation says
that its 4xx and 503 answers have the shape of `api/errors.py` (`{"error": {"code", "message"}}`),
so that clients and schema-driven tests (tests/reliability/test_fuzzing.py) can rely on it.

FastAPI would otherwise document 422 as its own `HTTPValidationError`, which this API never sends.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable: unauthorized, forbidden, not_found, invalid_input, …")
    message: str = Field(description="For people: what was wrong and, where it helps, what to do.")
    details: Any = Field(
        default=None,
        description="For a 422 a list of `{field, message}`; for a 409 or 412 the segment's `current_version`.",
    )


class ErrorBody(BaseModel):
    error: ErrorDetail


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


# Per-route documentation (a 404 with its own description, say) takes precedence over these.
LOOKUP_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _error("Missing, unknown or revoked API key (`WWW-Authenticate: Bearer`)."),
    413: _error("The request body is over the limit: 64 KiB on /v1/segments…, 1 MiB elsewhere."),
    422: _error("Invalid input; `error.details` names each field (the first 10 problems, each cut at 200 characters)."),
    429: _error("This client failed too many API key checks; `Retry-After` says when to try again."),
    "4XX": _error("Any other client error, in the same shape."),
    503: _error("A dependency is unavailable (Elasticsearch for lookups, PostgreSQL for config management); retry."),
}
ADMIN_ERRORS = {**LOOKUP_ERRORS, 403: _error("Config management needs a key of scope admin.")}
