"""docs/openapi.json is the document the API serves; a route change without `segmentation openapi` fails here."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from api.main import OPENAPI_FILE, create_app, render_openapi


def test_the_openapi_file_is_what_the_api_serves() -> None:
    served = TestClient(create_app()).get("/openapi.json")  # no lifespan: no client is opened
    assert served.status_code == 200
    assert json.loads(OPENAPI_FILE.read_text()) == served.json(), (
        "docs/openapi.json is stale: run `.venv/bin/segmentation openapi` and commit the file"
    )
    assert OPENAPI_FILE.read_text() == render_openapi()


def test_every_lookup_of_the_contract_is_documented() -> None:
    paths = json.loads(OPENAPI_FILE.read_text())["paths"]
    for path, method in [
        ("/v1/customers/{customer_id}/segments", "get"),
        ("/v1/customers/segments:batch", "post"),
        ("/v1/segments/{segment_id}/members/{customer_id}", "get"),
        ("/v1/segments/{segment_id}/members", "get"),
        ("/v1/segments/{segment_id}/stats", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    ]:
        assert method in paths.get(path, {}), path
