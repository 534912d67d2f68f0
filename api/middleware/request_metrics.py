"""Latency of every HTTP request by route template (`/v1/customers/{customer_id}/segments`), as
plain ASGI middleware: no per-request objects beyond the timer, nothing on the body."""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.middleware.request_context import route_template
from resources.serving.metrics import HTTP_LATENCY


class RequestMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._children: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            # Unmatched paths share one label, so that scanners cannot grow the metric without bound.
            template = route_template(scope)
            key = (template, scope["method"], status)
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = HTTP_LATENCY.labels(template, scope["method"], str(status))
            child.observe(time.perf_counter() - started)
