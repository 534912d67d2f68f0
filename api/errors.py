"""One error shape for every failure, `{"error": {"code", "message"}}`, rendered here only:
the API's errors, their one renderer (`error_response`), and the handlers that use it."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from resources.config_store.guard import ConfigStoreUnavailable
from resources.serving.search_guard import SearchUnavailable

# FastAPI answers 400 with this when the body is not even text it can decode (bad UTF-8, nesting too deep).
_FASTAPI_BODY_PARSE_FAILURE = "There was an error parsing the body"


class ApiError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers
        self.details = details


class Unauthorized(ApiError):
    status_code = 401
    code = "unauthorized"


class Forbidden(ApiError):
    status_code = 403
    code = "forbidden"


class NotFound(ApiError):
    status_code = 404
    code = "not_found"


class Conflict(ApiError):
    status_code = 409
    code = "conflict"


class PreconditionFailed(ApiError):
    status_code = 412
    code = "version_mismatch"


class PayloadTooLarge(ApiError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(ApiError):
    status_code = 415
    code = "unsupported_media_type"


class PreconditionRequired(ApiError):
    status_code = 428
    code = "precondition_required"


class TooManyRequests(ApiError):
    status_code = 429
    code = "too_many_requests"


class InvalidInput(ApiError):
    status_code = 422
    code = "invalid_input"


class ServiceUnavailable(ApiError):
    status_code = 503
    code = "unavailable"


class InternalError(ApiError):
    status_code = 500
    code = "internal_error"


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"error": error}


def field_path(location: tuple[Any, ...] | list[Any]) -> str:
    """`('body', 'params', 'max_orders')` -> `params.max_orders`: the field as the client wrote it.
    A bad dict key (`('labels', 'Team', '[key]')`) is named by the key itself: `labels.Team`, and a
    repeated query parameter by its name (`('query', 'status', 0)` -> `status`)."""
    in_query = bool(location) and location[0] == "query"
    parts = [
        str(p)
        for p in location
        if p not in ("body", "query", "path", "header", "[key]") and not (in_query and isinstance(p, int))
    ]
    return ".".join(parts) or "body"


# A 422 names the first few problems, each cut short: an answer never much bigger than the request,
# whatever the request (a body of 524,000 bad items once got a 67 MB answer, after 3.5 s).
MAX_ERROR_DETAILS = 10
MAX_DETAIL_CHARACTERS = 200


def _cut(text: str) -> str:
    return text if len(text) <= MAX_DETAIL_CHARACTERS else text[: MAX_DETAIL_CHARACTERS - 1] + "…"


def validation_details(errors: list[dict[str, Any]], prefix: tuple[Any, ...] = ()) -> list[dict[str, str]]:
    details = []
    for error in errors[:MAX_ERROR_DETAILS]:
        if error["type"] == "json_invalid":  # its location is a character offset, not a field
            position = error["loc"][-1]
            details.append({"field": "body", "message": f"invalid JSON at character {position}: {error['ctx']['error']}"})
        else:
            details.append({"field": field_path((*prefix, *error["loc"])), "message": error["msg"]})
    if len(errors) > MAX_ERROR_DETAILS:
        details.append({"field": "body", "message": f"and {len(errors) - MAX_ERROR_DETAILS} more problems, not listed"})
    return details


def invalid_input(details: list[dict[str, str]]) -> InvalidInput:
    details = [{"field": _cut(d["field"]), "message": _cut(d["message"])} for d in details]
    message = "; ".join(f"{d['field']}: {d['message']}" for d in details)
    return InvalidInput(message, details=details)


def invalid_field(field: str, message: str) -> InvalidInput:
    return invalid_input([{"field": field, "message": message}])


def error_response(error: ApiError, **extra: Any) -> JSONResponse:
    """The one place an error becomes an answer; `extra` adds top-level fields (readyz's checks)."""
    return JSONResponse(
        {**error_body(error.code, error.message, error.details), **extra},
        status_code=error.status_code,
        headers=error.headers,
    )


def unavailable(error: SearchUnavailable | ConfigStoreUnavailable) -> ServiceUnavailable:
    return ServiceUnavailable(str(error), headers={"Retry-After": str(error.retry_after_seconds)})


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, error: ApiError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(invalid_input(validation_details(list(error.errors()))))

    @app.exception_handler(SearchUnavailable)
    @app.exception_handler(ConfigStoreUnavailable)
    async def _dependency_unavailable(_: Request, error: SearchUnavailable | ConfigStoreUnavailable) -> JSONResponse:
        return error_response(unavailable(error))

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(PoolTimeout)
    async def _database_unreachable(_: Request, __: Exception) -> JSONResponse:
        return error_response(ServiceUnavailable("the config store (PostgreSQL) is unavailable; try again"))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 400 and error.detail == _FASTAPI_BODY_PARSE_FAILURE:
            return error_response(invalid_field("body", "not a valid JSON document"))
        failure = ApiError(str(error.detail), headers=error.headers)
        failure.status_code = error.status_code
        failure.code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(error.status_code, "http_error")
        return error_response(failure)
