"""Request body limits, enforced before anything parses the body.

Starlette's own `max_body_size` answers plain text when Content-Length is declared, which would
break the API's error shape; this middleware answers `{"error": ...}` in every case.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import PayloadTooLarge, error_response

# Segment configs are small; 64 KiB holds hundreds of labels. Other routes (batch lookups of
# 1,000 ids) get room enough for their own limits.
CONFIG_BODY_MAX_BYTES = 64 * 1024
DEFAULT_BODY_MAX_BYTES = 1024 * 1024


class BodyTooLarge(HTTPException):
    """Raised while the body is read; the app's HTTPException handler renders it."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"the request body is larger than {max_bytes} bytes")


class RequestBodyLimit:
    """Refuses bodies over the limit of their path (the longest matching prefix, else the default)
    with 413: at once when Content-Length says so, else as soon as the bytes read pass it (chunked)."""

    def __init__(self, app: ASGIApp, *, default_max_bytes: int, max_bytes_by_prefix: dict[str, int]) -> None:
        self.app = app
        self.default_max_bytes = default_max_bytes
        # Longest first, so that a more specific prefix wins.
        self.max_bytes_by_prefix = sorted(max_bytes_by_prefix.items(), key=lambda item: -len(item[0]))

    def max_bytes(self, path: str) -> int:
        for prefix, max_bytes in self.max_bytes_by_prefix:
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return max_bytes
        return self.default_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.max_bytes(scope["path"])
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            await _too_large(max_bytes)(scope, receive, send)
            return

        received = 0
        response_started = False

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise BodyTooLarge(max_bytes)
            return message

        async def send_tracking_start(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive_within_limit, send_tracking_start)
        except BodyTooLarge:
            if response_started:
                raise
            await _too_large(max_bytes)(scope, receive, send)


def _too_large(max_bytes: int) -> JSONResponse:
    error = BodyTooLarge(max_bytes)
    # The unread body stays on the connection: close it rather than read what was refused.
    return error_response(PayloadTooLarge(error.detail, headers={"Connection": "close"}))
