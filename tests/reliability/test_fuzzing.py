"""Schemathesis against the OpenAPI document the API serves: every operation, with a key of each
scope, valid and invalid requests, over a namespace that serves a real calculation and holds real
segment configs. No answer may be a 5xx, and every answer must be one the document describes:
a documented status, its content type, a body that matches its schema, errors in the API's shape.

Bounded for CI: `SEGMENTATION_FUZZ_EXAMPLES` (default 25) examples per operation, scope and mode;
raise it for a longer run. The case count is printed at the end of the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup

from api.main import create_app
from resources.settings import Settings
from tests.integration.test_config_api import NEW_CUSTOMERS, Keys
from tests.reliability import run_report
from tests.reliability.platform import make_keys, publish_calculation

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("SEGMENTATION_FUZZ_EXAMPLES", "25"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
SERVED = {"seg-0": [f"c{n:04d}" for n in range(0, 60)], "seg-1": [f"c{n:04d}" for n in range(30, 90)], "seg-empty": []}
READ_OPERATIONS = {  # what a read key may call; the rest needs admin
    ("GET", "/v1/customers/{customer_id}/segments"),
    ("POST", "/v1/customers/segments:batch"),
    ("GET", "/v1/segments/{segment_id}/members/{customer_id}"),
    ("GET", "/v1/segments/{segment_id}/members"),
    ("GET", "/v1/segments/{segment_id}/stats"),
    ("GET", "/v1/segments/{segment_id}/history"),
}


@pytest.fixture(scope="module")
def api(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, TestClient, Keys]]:
    publish_calculation(settings, "2026-11-20", SERVED)
    keys = make_keys(settings, "fuzz")
    # A roomy time budget: this checks what inputs do, not how fast a shared machine's cluster is.
    roomy = {"state_dir": tmp_path_factory.mktemp("state"), "api_search_budget_seconds": 5.0}
    app = create_app(settings.model_copy(update=roomy))
    with TestClient(app) as client:
        yield app, client, keys


def error_shape(response: Any) -> str | None:
    """Every 4xx and 5xx in the API's error shape, documented with a schema or not."""
    if response.status_code < 400:
        return None
    try:
        error = response.json()["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str)
    except Exception:  # noqa: BLE001 - any deviation is the finding
        return f"not in the error shape: {response.text[:200]}"
    return None


def unparsable_body(response: Any) -> bool:
    """FastAPI reads a JSON body before any dependency runs: a body that is not JSON at all is a 422
    whatever the key (a decision in README.md; nothing is done with such a body)."""
    if response.status_code != 422:
        return False
    details = response.json()["error"].get("details") or []
    return any(d.get("field") == "body" and "JSON" in d.get("message", "") for d in details)


def real_path_parameters(path: str, client: TestClient, keys: Keys) -> dict[str, str]:
    """Ids that exist, so that the examples reach storage and Elasticsearch, not only validation."""
    parameters = {}
    if "{customer_id}" in path:
        parameters["customer_id"] = "c0042"  # in both served segments
    if "{segment_id}" in path:
        if path.startswith("/v1/segments/{segment_id}/members") or path.endswith("/stats"):
            parameters["segment_id"] = "seg-1"
        else:
            created = client.post("/v1/segments", json=NEW_CUSTOMERS, headers=keys.as_admin)
            assert created.status_code == 201, created.text
            parameters["segment_id"] = created.json()["id"]
    return parameters


def test_no_generated_request_meets_a_server_error_or_an_answer_outside_the_schema(api) -> None:
    app, client, keys = api
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    cases = 0
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15  # every /v1 operation, and the three of health

    for operation in operations:
        method = operation.method.upper()
        public = not operation.path.startswith("/v1/")
        readable = public or (method, operation.path) in READ_OPERATIONS
        scopes = {"admin": keys.as_admin, "read": keys.as_reader}
        for scope, headers in scopes.items():
            # A read key on config management meets a 403 before anything else: a few examples prove it.
            budget = EXAMPLES if scope == "admin" or readable else max(3, EXAMPLES // 5)
            for mode, path_parameters in (
                (GenerationMode.POSITIVE, real_path_parameters(operation.path, client, keys)),
                (GenerationMode.POSITIVE, None),
                (GenerationMode.NEGATIVE, None),
            ):

                @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters or None))
                @examples(max_examples=budget, deadline=None, database=None, suppress_health_check=list(HealthCheck))
                def call(case: Any) -> None:
                    nonlocal cases
                    cases += 1
                    # The key is the scope under test, whatever the example made of the header.
                    case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
                    response = case.call(headers=headers)
                    where = f"{method} {case.formatted_path} [{scope}, {mode.value}] -> {response.status_code}"
                    try:
                        case.validate_response(response, checks=CHECKS)
                    except FailureGroup as group:
                        failures.append(f"{where}: {'; '.join(type(e).__name__ + ': ' + str(e).splitlines()[0] for e in group.exceptions)}")
                    if (problem := error_shape(response)) is not None:
                        failures.append(f"{where}: {problem}")
                    sent_key = "authorization" in response.request.headers  # negative examples may leave it out
                    if sent_key and not public and scope == "read" and not readable and response.status_code != 403 and not unparsable_body(response):
                        failures.append(f"{where}: a read key must meet 403 on config management; body {case.body!r}"[:300])
                    if not sent_key and not public and response.status_code != 401:
                        failures.append(f"{where}: no key must meet 401")

                try:
                    call()
                except Unsatisfiable:
                    pass  # nothing to make invalid in an operation without parameters

    run_report.record_fuzzing(cases, len(operations))
    assert failures == [], f"{len(failures)} of {cases} cases failed:\n" + "\n".join(failures[:40])
    assert cases >= len(operations) * EXAMPLES
