"""The request body limit answers 413 in the API's error shape, before anything parses the body."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from api.middleware.body_limit import RequestBodyLimit
from api.errors import install_error_handlers


def _app(seen: list[int]) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(RequestBodyLimit, default_max_bytes=1000, max_bytes_by_prefix={"/small": 100})

    @app.post("/small/thing")
    async def small(request: Request) -> dict[str, Any]:
        body = await request.body()
        seen.append(len(body))
        return {"size": len(body)}

    @app.post("/large")
    async def large(request: Request) -> dict[str, Any]:
        body = await request.body()
        seen.append(len(body))
        return {"size": len(body)}

    return app


@pytest.fixture
def seen() -> list[int]:
    return []


@pytest.fixture
def client(seen: list[int]) -> TestClient:
    return TestClient(_app(seen))


def _assert_too_large(response: Any, limit: int) -> None:
    assert response.status_code == 413
    assert response.json() == {
        "error": {"code": "payload_too_large", "message": f"the request body is larger than {limit} bytes"}
    }


def test_bodies_within_the_limit_of_their_path_pass(client: TestClient, seen: list[int]) -> None:
    assert client.post("/small/thing", content=b"x" * 100).json() == {"size": 100}
    assert client.post("/large", content=b"x" * 1000).json() == {"size": 1000}
    assert seen == [100, 1000]


def test_declared_length_over_the_limit_is_refused_before_the_route_runs(client: TestClient, seen: list[int]) -> None:
    _assert_too_large(client.post("/small/thing", content=b"x" * 101), 100)
    _assert_too_large(client.post("/large", content=b"x" * 1001), 1000)
    assert seen == []


def test_chunked_body_over_the_limit_is_refused_while_it_is_read(client: TestClient, seen: list[int]) -> None:
    chunks = iter([b"x" * 60, b"x" * 60, b"x" * 60])
    response = client.post("/small/thing", content=chunks)
    assert "content-length" not in response.request.headers
    _assert_too_large(response, 100)
    assert seen == []


def test_every_received_chunk_counts_and_the_route_never_sees_the_body() -> None:
    """Straight through ASGI, with the body in several messages as a server delivers it."""
    seen: list[int] = []
    app = _app(seen)
    messages = [{"type": "http.request", "body": b"x" * 40, "more_body": True} for _ in range(3)]
    messages.append({"type": "http.request", "body": b"", "more_body": False})
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/small/thing", "raw_path": b"/small/thing", "query_string": b"", "root_path": "",
        "headers": [(b"transfer-encoding", b"chunked")], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413
    assert b"payload_too_large" in sent[1]["body"]
    assert seen == []
