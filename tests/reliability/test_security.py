"""Security of the API (issue 7): who may call what, on every route; body size limits; ids checked
before they reach Elasticsearch or SQL; keys revoked within the cache's life; secrets kept out
of the repository, the logs and the answers.

The routes come from the running app, so that a new route cannot be missed: docs/reference.md says which
are public and which a read key may call, and every other route is expected to need admin.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from elastic_transport import AsyncTransport
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import event

from api.middleware.body_limit import CONFIG_BODY_MAX_BYTES, DEFAULT_BODY_MAX_BYTES
from api.main import create_app
from resources.config_store.database import engine_for
from resources.json_logs import configure_logging
from resources.serving.export import ExportCursor
from resources.settings import PROJECT_ROOT, Settings
from tests.integration.test_config_api import NEW_CUSTOMERS, Keys
from tests.reliability.platform import make_keys, publish_calculation

pytestmark = pytest.mark.integration

# no key needed here (and FastAPI's own documents of the API).
PUBLIC = {("GET", p) for p in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")}
PUBLIC.add(("GET", "/console/static"))  # the console's stylesheet, script and vendored htmx
# a read key may call the lookups; an admin key may call everything.
READ = {
    ("GET", "/v1/customers/{customer_id}/segments"),
    ("POST", "/v1/customers/segments:batch"),
    ("GET", "/v1/segments/{segment_id}/members/{customer_id}"),
    ("GET", "/v1/segments/{segment_id}/members"),
    ("GET", "/v1/segments/{segment_id}/stats"),
    ("GET", "/v1/segments/{segment_id}/history"),
}
PATH_VALUES = {"customer_id": "c0001", "segment_id": "seg-0", "preview_id": "prv_0"}


@pytest.fixture(scope="module")
def world(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Keys, dict[str, str], io.StringIO]]:
    publish_calculation(settings, "2026-11-20", {"seg-0": [f"c{n:04d}" for n in range(10)]})
    keys = make_keys(settings, "security")
    revoked = keys.repository.create("security-revoked", "admin")
    assert keys.repository.revoke("security-revoked")
    tokens = {"unknown": "sgk_" + "A" * 43, "revoked": revoked}
    logs = io.StringIO()
    app = create_app(settings.model_copy(update={"state_dir": tmp_path_factory.mktemp("state")}))
    with TestClient(app) as client:
        configure_logging(stream=logs, level="DEBUG", log_format="json")  # every request, to look for secrets
        yield client, keys, tokens, logs
    configure_logging()


def served_operations(client: TestClient) -> set[tuple[str, str]]:
    """(method, path template) of every route the app serves."""
    document = client.get("/openapi.json").json()
    operations = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    plain = {("GET", r.path) for r in client.app.routes if getattr(r, "path", None) and not isinstance(r, APIRoute)}
    return operations | plain


def api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        inner = getattr(route, "original_router", None) or getattr(route, "app", None)  # included routers, mounts
        if inner is not None and hasattr(inner, "routes"):
            yield from api_routes(inner.routes)


def test_no_route_is_hidden_from_the_matrix(world) -> None:
    client, *_ = world
    # The console's pages are not API operations: their session and CSRF are tests/integration/test_console.py's.
    routes = [r for r in api_routes(client.app.routes) if not r.path.startswith("/console")]
    documented = client.get("/openapi.json").json()["paths"]
    assert routes and all(r.include_in_schema for r in routes), "a route left out of OpenAPI would escape the matrix"
    assert sum(len(r.methods) for r in routes) == sum(len(ops) for ops in documented.values())
    assert READ <= served_operations(client)  # the contract's lookups are all there


def call(client: TestClient, method: str, template: str, authorization: str | None, body: bytes = b"{}") -> Any:
    path = template.format(**PATH_VALUES)
    headers = {"Authorization": authorization} if authorization is not None else {}
    if method in ("POST", "PATCH", "PUT"):
        return client.request(method, path, headers={**headers, "Content-Type": "application/json"}, content=body)
    return client.request(method, path, headers=headers)


def test_authorization_matrix_over_every_route(world) -> None:
    client, keys, tokens, _ = world
    credentials = {
        "none": None,
        "basic": "Basic YWRtaW46YWRtaW4=",
        "empty bearer": "Bearer ",
        "unknown key": f"Bearer {tokens['unknown']}",
        "revoked key": f"Bearer {tokens['revoked']}",
        "read key": f"Bearer {keys.reader}",
        "admin key": f"Bearer {keys.admin}",
        # Spaces around a token are no part of it, on every route alike (routes differ in who reads the header).
        "read key, spaced": f"Bearer  {keys.reader} ",
        "admin key, spaced": f"Bearer  {keys.admin} ",
    }
    wrong: list[str] = []
    checked = 0
    for method, template in sorted(served_operations(client)):
        needs = "public" if (method, template) in PUBLIC else "read" if (method, template) in READ else "admin"
        # A body that is not even JSON meets the key check first too (401, then 403).
        bodies = [b"{}", b"not json"] if method in ("POST", "PATCH", "PUT") else [b""]
        for (who, authorization), body in ((c, b) for c in credentials.items() for b in bodies):
            response = call(client, method, template, authorization, body)
            checked += 1
            scope = who.removesuffix(", spaced")
            if needs == "public" or scope == "admin key" or (scope == "read key" and needs == "read"):
                expected = "not 401/403"
                ok = response.status_code not in (401, 403) and response.status_code < 500
            elif scope == "read key":
                expected = "403"
                ok = response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
            else:
                expected = "401"
                ok = (
                    response.status_code == 401
                    and response.json()["error"]["code"] == "unauthorized"
                    and response.headers.get("www-authenticate") == "Bearer"
                )
            if not ok:
                wrong.append(f"{method} {template} with {who} and body {body!r}: {response.status_code}, expected {expected}")
    assert wrong == [], "\n".join(wrong)
    assert checked >= 18 * len(credentials)


def test_keys_never_reach_the_logs(world) -> None:
    client, keys, tokens, logs = world
    for authorization in (keys.reader, keys.admin, tokens["unknown"], tokens["revoked"]):
        client.get("/v1/customers/c0001/segments", headers={"Authorization": f"Bearer {authorization}"})
        client.post("/v1/segments", json={"name": 1}, headers={"Authorization": f"Bearer {authorization}"})
    text = logs.getvalue()
    assert '"route": "/v1/customers/{customer_id}/segments"' in text  # the requests were logged ...
    for token in (keys.reader, keys.admin, tokens["unknown"], tokens["revoked"]):
        assert token[4:] not in text  # ... and no key, nor its secret part


def limit_of(path: str) -> int:
    return CONFIG_BODY_MAX_BYTES if path.startswith("/v1/segments") else DEFAULT_BODY_MAX_BYTES


def test_a_body_over_the_limit_is_413_on_every_route_before_the_key_is_checked(world) -> None:
    client, keys, *_ = world
    for method, template in sorted(served_operations(client)):
        path = template.format(**PATH_VALUES)
        limit = limit_of(path)
        for headers in ({}, keys.as_admin):
            over = client.request(method, path, content=b" " * (limit + 1), headers={**headers, "Content-Type": "application/json"})
            assert over.status_code == 413, (method, path, over.status_code)
            assert over.json()["error"]["code"] == "payload_too_large"


def test_a_chunked_body_is_cut_at_the_limit_too(world) -> None:
    client, keys, *_ = world
    documented = client.get("/openapi.json").json()["paths"]
    with_body = [(m.upper(), p) for p, ops in documented.items() for m, op in ops.items() if "requestBody" in op]
    assert len(with_body) >= 3
    for method, template in with_body:
        path = template.format(**PATH_VALUES)
        pieces = limit_of(path) // 65536 + 1
        # Without a key the body is not read at all: 401. With one, reading stops at the limit.
        for headers, expected in (({}, 401), (keys.as_admin, 413)):
            chunked = client.request(method, path, content=iter([b" " * 65536] * pieces), headers=headers)
            assert chunked.status_code == expected, (method, path, chunked.status_code)
    within = client.post("/v1/customers/segments:batch", json={"customer_ids": ["c0001"] * 1000}, headers=keys.as_reader)
    assert within.status_code == 200


# Ids that are not ids: Elasticsearch patterns and lists, SQL, paths, control characters, too long.
BAD_IDS = ["*", "_all", "seg-0,other-index", "a b", "x" * 129, "-leading", "ü", "1' OR '1'='1", "seg%00", "%2e%2e%2fetc"]


@pytest.fixture
def reached() -> Iterator[list[str]]:
    """Every Elasticsearch request (method, path, body) and SQL statement (with its parameters) made."""
    seen: list[str] = []
    original = AsyncTransport.perform_request

    async def recording(self: Any, method: str, target: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(f"ES {method} {target} {kwargs.get('body')!r}")
        return await original(self, method, target, *args, **kwargs)

    AsyncTransport.perform_request = recording  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        AsyncTransport.perform_request = original  # type: ignore[method-assign]


def test_invalid_ids_are_refused_before_they_reach_elasticsearch_or_sql(world, reached, settings: Settings) -> None:
    client, keys, *_ = world

    def sql(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        reached.append(f"SQL {statement} {parameters!r}")

    engine = engine_for(settings.database_url)
    event.listen(engine, "before_cursor_execute", sql)
    try:
        for method, template in sorted(served_operations(client)):
            for name in re.findall(r"\{(\w+)\}", template):
                for bad in BAD_IDS:
                    path = template.format(**{**PATH_VALUES, name: bad})
                    body = {"json": NEW_CUSTOMERS} if method in ("POST", "PATCH") else {}
                    response = client.request(method, path, headers={**keys.as_admin, "If-Match": "1"}, **body)
                    assert response.status_code in (404, 422), (method, path, response.status_code)
                    if response.status_code == 422:
                        assert name in response.json()["error"]["message"], (method, path)
        batch = client.post("/v1/customers/segments:batch", json={"customer_ids": ["c0001", *BAD_IDS]}, headers=keys.as_reader)
        assert batch.status_code == 422 and "customer_ids" in batch.json()["error"]["message"]
    finally:
        event.remove(engine, "before_cursor_execute", sql)
    leaked = [r for r in reached for bad in BAD_IDS if bad != "*" and bad in r]
    # Searches name the read alias or one index: never a pattern, a list or _all.
    searches = [r.split()[2] for r in reached if r.startswith("ES") and "/_search" in r.split()[2]]
    leaked += [t for t in searches if re.search(r"[*,]|_all", t.split("/_search")[0])]
    assert leaked == [], leaked[:5]


def test_a_forged_export_cursor_never_points_elasticsearch_elsewhere(world, reached, settings: Settings) -> None:
    client, keys, *_ = world
    prefix = settings.index_prefix
    forged = [
        f"{prefix}-*",  # every index of the deployment
        f"{prefix}-x,segments-new_customers-2026-11-20-abcdef12",  # a list reaching another deployment's index
        f"{prefix}-read,*",
        f"{prefix}-../_search",
        f"{prefix}-x:y",  # cross-cluster syntax
        f"{prefix}-read",  # aliases: pages would come from whichever calculation they point at then
        f"{prefix}-new_customers",
    ]
    for index in forged:
        cursor = ExportCursor(index, "seg-0", 0, 0).encode()
        response = client.get("/v1/segments/seg-0/members", params={"cursor": cursor}, headers=keys.as_reader)
        assert response.status_code == 422, (index, response.status_code, response.text)
        assert response.json()["error"]["details"][0]["field"] == "cursor"
    assert not [r for r in reached if any(f in r for f in forged)], reached[:5]


def test_a_revoked_key_stops_working_within_the_cache_life(world, settings: Settings, tmp_path) -> None:
    _, keys, *_ = world
    name = f"security-soon-revoked-{time.monotonic_ns()}"
    token = keys.repository.create(name, "read")
    headers = {"Authorization": f"Bearer {token}"}
    life = 1.0
    with TestClient(create_app(settings.model_copy(update={"state_dir": tmp_path}))) as running:
        running.app.state.segmentation.api_keys.ttl_seconds = life  # the 10 s default, shortened
        assert running.get("/v1/customers/c0001/segments", headers=headers).status_code == 200
        assert keys.repository.revoke(name)
        revoked_at = time.monotonic()
        with TestClient(create_app(settings.model_copy(update={"state_dir": tmp_path}))) as fresh:
            assert fresh.get("/v1/customers/c0001/segments", headers=headers).status_code == 401  # at once
        while running.get("/v1/customers/c0001/segments", headers=headers).status_code == 200:
            assert time.monotonic() - revoked_at < life + 1.0, "still accepted after the cache's life"
            time.sleep(0.05)
    # The life stated to users is the one the code keeps.
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert "A revoked API key stops working within a second" in readme  # tests/reliability/test_hostile_clients.py


SECRET_SHAPES = {
    "API key": re.compile(r"\bsgk_[A-Za-z0-9_-]{30,}"),
    "AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
}
URL_PASSWORD = re.compile(r"\b[a-z][a-z0-9+.]*://[^\s:/@'\"]*:([^\s@/'\"]+)@")
# The local servers' default (every setting has a working local default) and placeholders.
NOT_SECRETS = {"segmentation", "password", "pass", "secret", "***", "[redacted]"}


@pytest.mark.parametrize("path", ["/v1/segments/", "/v1/customers/c0001/segments/", "/healthz/"])
def test_no_redirect_is_built_from_the_clients_host(world, path: str) -> None:
    client, keys, _, _ = world
    response = client.get(path, headers={**keys.as_admin, "Host": "evil.example"}, follow_redirects=False)
    assert response.status_code == 404, response.headers
    assert "location" not in response.headers
    assert response.json()["error"]["code"]  # the API's own error shape, not a bare redirect


def test_a_list_of_filters_is_bounded_and_a_422_is_never_much_bigger_than_its_request(world) -> None:
    client, keys, _, _ = world
    body = b'{"customer_ids": ["c0001"], "segment_type": [' + b",".join([b"0"] * 300_000) + b"]}"
    response = client.post(
        "/v1/customers/segments:batch", content=body, headers={**keys.as_reader, "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert [d["field"] for d in response.json()["error"]["details"]] == ["segment_type"]
    assert len(response.content) < 2_000

    repeated = [("segment_type", "new_customers")] * 21
    assert client.get("/v1/customers/c0001/segments", params=repeated, headers=keys.as_reader).status_code == 422
    assert client.get("/v1/customers/c0001/segments", params=repeated[:20], headers=keys.as_reader).status_code == 200

    bad_labels = {f"BAD KEY {n}": "x" for n in range(3_000)}  # each key an error, in under 64 KiB
    segment = {**NEW_CUSTOMERS, "labels": bad_labels}
    request = json.dumps(segment).encode()
    response = client.post("/v1/segments", content=request, headers={**keys.as_admin, "Content-Type": "application/json"})
    assert response.status_code == 422
    details = response.json()["error"]["details"]
    assert len(details) == 11 and details[-1]["message"].startswith("and ")  # ten named, the rest counted
    assert len(response.content) < len(request) / 4


def test_no_secret_is_kept_in_the_repository() -> None:
    """Secrets come from the environment (the settings); the only password in the tree is the
    local default of the servers `segmentation services up` installs on 127.0.0.1."""
    files = subprocess.run(["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True).stdout.split()
    found = []
    for name in files:
        path = PROJECT_ROOT / name
        if not path.is_file() or path.suffix in (".parquet", ".png", ".zip", ".jar") or name.startswith("tests/"):
            continue
        text = path.read_text(errors="ignore")
        found += [f"{name}: {kind}" for kind, shape in SECRET_SHAPES.items() if shape.search(text)]
        found += [
            f"{name}: password {p[:2]}… in a URL"
            for p in URL_PASSWORD.findall(text)
            if p not in NOT_SECRETS and not p.startswith(("$", "{", "<", "[", "*"))
        ]
    assert found == []


def test_secret_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGMENTATION_DATABASE_URL", "postgresql+psycopg2://app:from-env@db:5432/segments")
    monkeypatch.setenv("SEGMENTATION_REDIS_URL", "redis://:from-env@cache:6379/0")
    monkeypatch.setenv("SEGMENTATION_ELASTICSEARCH_URL", "https://elastic:from-env@search:9200")
    settings = Settings()
    assert "from-env" in settings.database_url and "from-env" in settings.redis_url and "from-env" in settings.elasticsearch_url
