"""JSON logs with a request id carried through, and no secret in any line.

The API under test runs on the real PostgreSQL, Elasticsearch and Redis; its log lines are read
back from the stream the platform's handler writes to.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.concurrency import run_in_threadpool
from fastapi.testclient import TestClient

from api.main import create_app
from api.middleware.request_context import CLIENT_ERROR_LINES_PER_SECOND
from resources.json_logs import configure_logging, redact
from resources.settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.integration

SECRET_DSN = "postgresql://reporting:hunter2-secret@db.internal:5432/segments"


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """What the platform's log handler writes, from the moment the fixture starts."""
    buffer = io.StringIO()
    configure_logging(stream=buffer, level="INFO", log_format="json")
    yield buffer
    configure_logging()


def lines_of(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]  # every line is one JSON object


@pytest.fixture
def api(settings: Settings, log_lines: io.StringIO) -> Iterator[TestClient]:
    app = create_app(settings)

    async def failing_route() -> None:
        # Logged from a worker thread, as the config store's calls run: the request id must follow.
        await run_in_threadpool(logging.getLogger("tests.reliability").warning, "about to fail for %s", "c42")
        raise RuntimeError(f"lost the connection to {SECRET_DSN}")

    app.add_api_route("/v1/test-failure", failing_route)
    with TestClient(app, raise_server_exceptions=False) as client:
        configure_logging(stream=log_lines, level="INFO", log_format="json")  # create_app configured stderr
        yield client


def test_the_callers_request_id_is_answered_and_logged(api: TestClient, log_lines: io.StringIO) -> None:
    response = api.get("/v1/customers/c1/segments", headers={"X-Request-ID": "gateway-7f3a"})

    assert response.status_code == 401
    assert response.headers["x-request-id"] == "gateway-7f3a"
    [line] = [l for l in lines_of(log_lines) if l.get("request_id") == "gateway-7f3a"]
    assert line["event"] == "request" and line["status"] == 401 and line["level"] == "info"
    assert line["route"] == "/v1/customers/{customer_id}/segments"  # the template, never the customer's id
    assert line["method"] == "GET" and line["duration_ms"] >= 0 and line["timestamp"].endswith("Z")


@pytest.mark.parametrize("given", ["", "two words", "x" * 129, "id;drop", "ünïcode"])
def test_a_request_id_that_is_not_a_plain_token_is_replaced(api: TestClient, given: str) -> None:
    response = api.get("/healthz", headers={"X-Request-ID": given.encode("utf-8")})

    assert response.status_code == 200
    assert response.headers["x-request-id"] != given
    assert len(response.headers["x-request-id"]) == 32  # a fresh uuid4, hex


def test_each_request_gets_its_own_id(api: TestClient) -> None:
    ids = {api.get("/healthz").headers["x-request-id"] for _ in range(20)}
    assert len(ids) == 20


def test_an_unexpected_failure_is_a_json_500_logged_with_its_request_id_and_no_secret(
    api: TestClient, log_lines: io.StringIO
) -> None:
    response = api.get("/v1/test-failure", headers={"X-Request-ID": "req-boom"})

    assert response.status_code == 500
    assert response.headers["x-request-id"] == "req-boom"
    error = response.json()["error"]
    assert error["code"] == "internal_error" and "req-boom" in error["message"]
    assert "hunter2" not in response.text

    mine = [l for l in lines_of(log_lines) if l.get("request_id") == "req-boom"]
    thread_line = next(l for l in mine if l["logger"] == "tests.reliability")
    assert thread_line["event"] == "about to fail for c42" and thread_line["level"] == "warning"
    failure = next(l for l in mine if l["event"] == "request failed")
    assert failure["level"] == "error" and failure["status"] == 500
    assert "RuntimeError: lost the connection to postgresql://reporting:[redacted]@db.internal" in failure["exception"]
    assert "hunter2" not in log_lines.getvalue()


def test_lines_from_other_requests_do_not_carry_a_previous_id(api: TestClient, log_lines: io.StringIO) -> None:
    api.get("/v1/customers/c1/segments", headers={"X-Request-ID": "first-one"})
    logging.getLogger("tests.reliability").warning("between requests")

    between = next(l for l in lines_of(log_lines) if l["event"] == "between requests")
    assert "request_id" not in between


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Bearer sgk_AbCdEf0123456789-_xyz", "AbCdEf0123456789"),
        ("token sgk_AbCdEf0123456789 leaked", "AbCdEf0123456789"),
        ("bearer abc.def.ghi", "abc.def.ghi"),
        ("redis://:s3cr3t@cache:6379/0", "s3cr3t"),
        ("host=db user=app password=s3cr3t dbname=x", "s3cr3t"),
        (SECRET_DSN, "hunter2"),
    ],
)
def test_secrets_are_masked_in_any_text(text: str, secret: str) -> None:
    assert secret not in redact(text)
    assert "[redacted]" in redact(text)


def test_structured_fields_named_like_secrets_are_masked(log_lines: io.StringIO) -> None:
    import structlog

    structlog.get_logger("tests.reliability").info(
        "connecting", password="p4ss", api_key="k3y", settings={"database_url": SECRET_DSN, "aws_secret": "x1y2"}
    )

    [line] = lines_of(log_lines)
    assert line["password"] == "[redacted]" and line["api_key"] == "[redacted]"
    assert line["settings"]["aws_secret"] == "[redacted]"
    assert "hunter2" not in line["settings"]["database_url"]


def test_the_cli_logs_json_lines_on_stderr_and_keeps_stdout_for_its_answer(settings: Settings) -> None:
    env = {**os.environ, "SEGMENTATION_DATABASE_URL": settings.database_url, "SEGMENTATION_LOG_FORMAT": "json"}
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "db", "upgrade"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "config store schema at head"
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert lines and all({"timestamp", "level", "logger", "event"} <= set(line) for line in lines)
    assert any(line["logger"].startswith("alembic") for line in lines)


def test_client_errors_are_logged_up_to_a_rate_then_counted(api: TestClient, log_lines: io.StringIO) -> None:
    """A client can cause any number of 4xx (forged keys, bad ids): past the rate, one line counts them."""
    started = time.monotonic()
    asked = CLIENT_ERROR_LINES_PER_SECOND * 5
    for _ in range(asked):
        assert api.get("/v1/customers/c1/segments", headers={"Authorization": "Bearer not-a-key"}).status_code == 401
    seconds = int(time.monotonic()) - int(started) + 1  # the seconds the requests fell in
    time.sleep(1.0)
    api.get("/v1/customers/c1/segments")  # a 4xx in a new second: says what the last one held back
    lines = lines_of(log_lines)
    logged = [line for line in lines if line["event"] == "request" and line["status"] == 401]
    held_back = sum(line["count"] for line in lines if line["event"] == "client errors not logged")
    assert len(logged) <= CLIENT_ERROR_LINES_PER_SECOND * (seconds + 1)
    assert len(logged) + held_back == asked + 1  # every one either logged or counted
