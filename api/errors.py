"""One error shape for every failure: `{"error": {"code", "message"}}`, and the handlers that render it."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


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


class PreconditionFailed(ApiError):
    status_code = 412
    code = "version_mismatch"


class PreconditionRequired(ApiError):
    status_code = 428
    code = "precondition_required"


class InvalidInput(ApiError):
    status_code = 422
    code = "invalid_input"


class ServiceUnavailable(ApiError):
    status_code = 503
    code = "unavailable"


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"error": error}


def field_path(location: tuple[Any, ...] | list[Any]) -> str:
    """`('body', 'params', 'max_orders')` -> `params.max_orders`: the field as the client wrote it."""
    parts = [str(p) for p in location if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def validation_details(errors: list[dict[str, Any]], prefix: tuple[Any, ...] = ()) -> list[dict[str, str]]:
    return [{"field": field_path((*prefix, *e["loc"])), "message": e["msg"]} for e in errors]


def invalid_input(details: list[dict[str, str]]) -> InvalidInput:
    message = "; ".join(f"{d['field']}: {d['message']}" for d in details)
    return InvalidInput(message, details=details)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(error.code, error.message, error.details), status_code=error.status_code, headers=error.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        invalid = invalid_input(validation_details(list(error.errors())))
        return JSONResponse(error_body(invalid.code, invalid.message, invalid.details), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(error.status_code, "http_error")
        return JSONResponse(error_body(code, str(error.detail)), status_code=error.status_code)
