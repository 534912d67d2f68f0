"""A request id for every HTTP request, carried through its logs and answered to the caller.

The id is the caller's `X-Request-ID` when that is a plain token (so a gateway's id follows the
request through), else a new one. It is bound to structlog's context for the request's task
(threads started with `run_in_threadpool` inherit it), so every log line written while the
request runs carries `request_id`; the answer carries it in `X-Request-ID`.

One log line per request that failed (status >= 400) or was slow: successful requests are
counted and timed in Prometheus (`api/middleware/request_metrics.py`) rather than logged, which would cost
more than the lookup itself. `SEGMENTATION_LOG_LEVEL=DEBUG` logs every request. Client errors
(4xx) are logged up to 20 a second per process, the rest counted in one line written with the
next one after that second: a client can cause any number of them (254 forged keys a second), and
their lines alone doubled other clients' p99. Prometheus counts every one.
An exception no handler caught is logged with its traceback and answered in the API's error
shape (500) before it goes on to the server, which logs it as well.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

import structlog
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import InternalError, error_response

REQUEST_ID_HEADER = "X-Request-ID"
# What a caller may choose as id: short, printable, nothing a log viewer would misread.
_CALLER_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
SLOW_REQUEST_SECONDS = 1.0
CLIENT_ERROR_LINES_PER_SECOND = 20

log = structlog.get_logger("api.request")
_request_logger = logging.getLogger("api.request")


def request_id_of(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _CALLER_REQUEST_ID.match(text):
                return text
            break
    return uuid.uuid4().hex


class LinesPerSecond:
    """At most `limit` lines in each second; `take` says whether one more may be written, and how
    many were held back in the second that just ended (to be said once)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._second = 0
        self._written = 0
        self._held_back = 0

    def take(self) -> tuple[bool, int]:
        second = int(time.monotonic())
        held_back = 0
        if second != self._second:
            held_back, self._second, self._written, self._held_back = self._held_back, second, 0, 0
        if self._written < self.limit:
            self._written += 1
            return True, held_back
        self._held_back += 1
        return False, held_back


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._client_error_lines = LinesPerSecond(CLIENT_ERROR_LINES_PER_SECOND)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status: int | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", ()) if k != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            return  # the client went (or the edge let a slow body go): nobody to answer, and no bug
        except Exception:
            log.exception("request failed", **_request_fields(scope, 500, started))
            if status is None:
                response = error_response(
                    InternalError(
                        f"an unexpected error; quote request id {request_id} when reporting it",
                        headers={REQUEST_ID_HEADER: request_id},
                    )
                )
                await response(scope, receive, send)
                status = 500
            raise
        else:
            seconds = time.perf_counter() - started
            if status is not None and status >= 500:
                log.error("request", **_request_fields(scope, status, started))
            elif status is not None and status >= 400:
                write, held_back = self._client_error_lines.take()
                if held_back:
                    log.info("client errors not logged", count=held_back, limit_per_second=CLIENT_ERROR_LINES_PER_SECOND)
                if write:
                    log.info("request", **_request_fields(scope, status, started))
            elif seconds >= SLOW_REQUEST_SECONDS:
                log.info("request", **_request_fields(scope, status, started))
            elif _request_logger.isEnabledFor(logging.DEBUG):  # checked first: the hot path logs nothing
                log.debug("request", **_request_fields(scope, status, started))
        finally:
            structlog.contextvars.reset_contextvars(**tokens)


def route_template(scope: Scope) -> str:
    """The matched route's template as the client calls it (`/v1/customers/{customer_id}/segments`),
    or `unmatched`: never the path itself, whose ids are customers' ids and unbounded.

    The route a router included under a prefix knows only its own part of the path
    (`/customers/{customer_id}/segments`); the prefix is the part of the path before it."""
    template = getattr(scope.get("route"), "path", None)
    if not template:
        return "unmatched"
    own = template.strip("/").split("/")
    path = scope["path"].strip("/").split("/")
    prefix = path[: len(path) - len(own)] if len(path) > len(own) else []
    return "/" + "/".join([*prefix, *own]) if prefix else template


def _request_fields(scope: Scope, status: int | None, started: float) -> dict[str, object]:
    return {
        "method": scope["method"],
        "route": route_template(scope),
        "status": status,
        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
    }
