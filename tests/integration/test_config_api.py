"""Segment config management on real PostgreSQL: keys and scopes, create, read, update
with If-Match, archive, list, audit, bad input, and archived segments leaving lookups."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from schemathesis import GenerationMode
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from api.main import create_app
from cli.main import app as cli
from resources.config_store.api_keys import ApiKeyRepository
from resources.config_store.database import session_factory
from resources.config_store.segments import SegmentRepository, StaleVersion
from resources.settings import Settings, get_settings

pytestmark = pytest.mark.integration

NEW_CUSTOMERS = {"name": "Signed up this month", "segment_type": "new_customers", "params": {"max_days_since_signup": 30}}


@dataclass
class Keys:
    admin: str
    reader: str
    repository: ApiKeyRepository

    @property
    def as_admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin}"}

    @property
    def as_reader(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.reader}"}


@pytest.fixture(scope="module")
def keys(settings: Settings) -> Keys:
    repository = ApiKeyRepository(session_factory(settings.database_url))
    return Keys(repository.create("config-admin", "admin"), repository.create("config-reader", "read"), repository)


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def segments(settings: Settings) -> SegmentRepository:
    return SegmentRepository(session_factory(settings.database_url))


def create(client: TestClient, keys: Keys, **fields: Any) -> dict[str, Any]:
    response = client.post("/v1/segments", json={**NEW_CUSTOMERS, **fields}, headers=keys.as_admin)
    assert response.status_code == 201, response.text
    return response.json()


def patch(client: TestClient, keys: Keys, segment_id: str, body: Any, if_match: str | None) -> Any:
    headers = {**keys.as_admin, **({"If-Match": if_match} if if_match is not None else {})}
    return client.patch(f"/v1/segments/{segment_id}", json=body, headers=headers)


def audit(client: TestClient, keys: Keys, segment_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/v1/segments/{segment_id}/audit", headers=keys.as_admin)
    assert response.status_code == 200, response.text
    return response.json()["entries"]


def assert_error(response: Any, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    if field is not None:
        assert field in error["message"], error
        assert field in [d["field"] for d in error["details"]], error
    return error


# --- keys and scopes ------------------------------------------------------------------------------

ENDPOINTS = [
    ("GET", "/v1/segment-types", None, 200),
    ("POST", "/v1/segments", NEW_CUSTOMERS, 201),
    ("GET", "/v1/segments", None, 200),
    ("GET", "/v1/segments/{id}", None, 200),
    ("PATCH", "/v1/segments/{id}", {"name": "Renamed"}, 200),
    ("DELETE", "/v1/segments/{id}", None, 204),
    ("GET", "/v1/segments/{id}/audit", None, 200),
]


@pytest.mark.parametrize(("method", "path", "body", "admin_status"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS])
def test_every_endpoint_needs_an_admin_key(
    client: TestClient, keys: Keys, method: str, path: str, body: Any, admin_status: int
) -> None:
    segment = create(client, keys)
    url = path.format(id=segment["id"])
    send = {"json": body} if body is not None else {}
    if_match = {"If-Match": "1"}

    for headers in ({}, {"Authorization": "Bearer sgk_unknown"}, {"Authorization": f"Basic {keys.admin}"}):
        refused = client.request(method, url, headers={**headers, **if_match}, **send)
        assert_error(refused, 401, "unauthorized")
        assert refused.headers["WWW-Authenticate"] == "Bearer"
    assert_error(client.request(method, url, headers={**keys.as_reader, **if_match}, **send), 403, "forbidden")
    # Refused calls change nothing.
    assert client.get(f"/v1/segments/{segment['id']}", headers=keys.as_admin).json()["version"] == 1
    assert len(audit(client, keys, segment["id"])) == 1

    allowed = client.request(method, url, headers={**keys.as_admin, **if_match}, **send)
    assert allowed.status_code == admin_status, allowed.text


def test_a_revoked_key_is_refused(settings: Settings, keys: Keys) -> None:
    name = f"revoked-{uuid.uuid4().hex[:6]}"
    token = keys.repository.create(name, "admin")
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/segment-types", headers=headers).status_code == 200
    assert keys.repository.revoke(name)
    with TestClient(create_app(settings)) as client:  # a new process, so no key cached
        assert_error(client.get("/v1/segment-types", headers=headers), 401, "unauthorized")


def test_last_used_is_written_in_the_background_not_per_request(settings: Settings, keys: Keys) -> None:
    name = f"usage-{uuid.uuid4().hex[:6]}"
    token = keys.repository.create(name, "read")
    unused = f"unused-{uuid.uuid4().hex[:6]}"
    keys.repository.create(unused, "read")
    started = datetime.now(timezone.utc)
    with TestClient(create_app(settings)) as client:
        for _ in range(3):
            assert client.get("/v1/customers/c1/segments", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        by_name = {k["name"]: k for k in keys.repository.list()}
        assert by_name[name]["last_used_at"] is None  # still in memory: no request waited on a write
    by_name = {k["name"]: k for k in keys.repository.list()}  # the app's shutdown flushed it
    last_used = by_name[name]["last_used_at"]
    assert last_used is not None and started - timedelta(seconds=1) <= last_used <= datetime.now(timezone.utc)
    assert by_name[unused]["last_used_at"] is None


# --- create and read -----------------------------------------------------------------------------


def test_create_answers_the_segment_at_version_1_with_its_targeting_derived(client: TestClient, keys: Keys) -> None:
    response = client.post(
        "/v1/segments",
        json={
            "name": "  Madrid newcomers  ",
            "segment_type": "new_customers",
            "params": {"max_days_since_signup": 14, "city": "Madrid", "country": "ES"},
            "labels": {"team": "growth", "channel": "push"},
            "description": "Welcome campaign",
            "status": "paused",
        },
        headers=keys.as_admin,
    )
    assert response.status_code == 201, response.text
    segment = response.json()
    assert response.headers["ETag"] == '"1"'
    assert response.headers["Location"] == f"/v1/segments/{segment['id']}"
    assert segment["name"] == "Madrid newcomers"
    assert segment["params"] == {"max_days_since_signup": 14, "max_orders": 0, "city": "Madrid", "country": "ES"}
    assert (segment["city"], segment["country"], segment["store_id"], segment["category"]) == ("Madrid", "ES", None, None)
    assert (segment["status"], segment["version"]) == ("paused", 1)
    assert segment["created_by"] == segment["updated_by"] == "config-admin"

    read = client.get(f"/v1/segments/{segment['id']}", headers=keys.as_admin)
    assert read.status_code == 200
    assert read.headers["ETag"] == '"1"'
    assert read.json() == segment


def test_segment_types_list_each_type_with_the_json_schema_of_its_params(client: TestClient, keys: Keys) -> None:
    from segmentation_assets.core.segment_types import SEGMENT_TYPES

    response = client.get("/v1/segment-types", headers=keys.as_admin)
    assert response.status_code == 200
    types = {t["name"]: t for t in response.json()["segment_types"]}
    assert set(types) == set(SEGMENT_TYPES)
    schema = types["new_customers"]["params_schema"]
    assert schema["properties"]["max_days_since_signup"]["maximum"] == 365
    assert schema["required"] == ["max_days_since_signup"]
    assert schema["additionalProperties"] is False


def test_unknown_segment_is_404_and_a_malformed_id_422(client: TestClient, keys: Keys) -> None:
    for method, suffix in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("GET", "/audit")):
        send = {"json": {"name": "x"}} if method == "PATCH" else {}
        response = client.request(
            method, f"/v1/segments/seg_missing{suffix}", headers={**keys.as_admin, "If-Match": "1"}, **send
        )
        assert_error(response, 404, "not_found")
    assert_error(client.get("/v1/segments/bad%20id", headers=keys.as_admin), 422, "invalid_input", "segment_id")


# --- update ----------------------------------------------------------------------------------------


def test_patch_needs_if_match_and_a_stale_version_changes_nothing(client: TestClient, keys: Keys) -> None:
    segment = create(client, keys)
    missing = patch(client, keys, segment["id"], {"name": "No precondition"}, None)
    assert_error(missing, 428, "precondition_required")
    assert_error(patch(client, keys, segment["id"], {"name": "x"}, "*"), 422, "invalid_input", "If-Match")

    assert patch(client, keys, segment["id"], {"name": "Second"}, "1").status_code == 200
    stale = patch(client, keys, segment["id"], {"name": "Lost update"}, '"1"')
    error = assert_error(stale, 412, "version_mismatch")
    assert error["details"] == {"current_version": 2}
    assert stale.headers["ETag"] == '"2"'

    current = client.get(f"/v1/segments/{segment['id']}", headers=keys.as_admin).json()
    assert (current["name"], current["version"]) == ("Second", 2)
    assert [e["action"] for e in audit(client, keys, segment["id"])] == ["create", "update"]


def test_if_match_takes_a_bare_a_quoted_and_a_weak_version(client: TestClient, keys: Keys) -> None:
    segment = create(client, keys)
    for version, header in enumerate(["1", '"2"', 'W/"3"'], start=1):
        response = patch(client, keys, segment["id"], {"name": f"Take {version}"}, header)
        assert response.status_code == 200, response.text
        assert response.headers["ETag"] == f'"{version + 1}"'
        assert response.json()["version"] == version + 1


def test_patch_revalidates_params_and_rederives_targeting(client: TestClient, keys: Keys) -> None:
    segment = create(client, keys, params={"max_days_since_signup": 30, "city": "Madrid"}, labels={"team": "growth"})
    response = patch(
        client, keys, segment["id"], {"params": {"max_days_since_signup": 7, "country": "PT"}, "labels": {"team": "crm"}}, "1"
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["params"] == {"max_days_since_signup": 7, "max_orders": 0, "country": "PT"}
    assert (updated["city"], updated["country"]) == (None, "PT")
    assert updated["labels"] == {"team": "crm"}
    assert (updated["name"], updated["status"]) == (segment["name"], "active")  # untouched fields stay

    invalid = patch(client, keys, segment["id"], {"params": {"max_days_since_signup": 0}}, "2")
    assert_error(invalid, 422, "invalid_input", "params.max_days_since_signup")
    assert client.get(f"/v1/segments/{segment['id']}", headers=keys.as_admin).json() == updated


def test_patch_may_pause_and_resume_but_not_change_type_nor_archive(client: TestClient, keys: Keys) -> None:
    segment = create(client, keys)
    assert patch(client, keys, segment["id"], {"status": "paused"}, "1").json()["status"] == "paused"
    assert patch(client, keys, segment["id"], {"status": "active"}, "2").json()["status"] == "active"
    assert_error(patch(client, keys, segment["id"], {"status": "archived"}, "3"), 422, "invalid_input", "status")
    other_type = patch(client, keys, segment["id"], {"segment_type": "frequent_buyers"}, "3")
    assert_error(other_type, 422, "invalid_input", "segment_type")
    same_type = patch(client, keys, segment["id"], {"segment_type": "new_customers", "name": "Same type"}, "3")
    assert same_type.status_code == 200 and same_type.json()["version"] == 4
    for null_field in ("name", "params", "labels", "status"):
        assert_error(patch(client, keys, segment["id"], {null_field: None}, "4"), 422, "invalid_input", null_field)


def test_a_patch_that_changes_nothing_is_no_new_version(client: TestClient, keys: Keys) -> None:
    segment = create(client, keys, labels={"team": "growth"})
    unchanged = patch(client, keys, segment["id"], {"name": segment["name"], "labels": {"team": "growth"}}, "1")
    assert unchanged.status_code == 200
    assert unchanged.json()["version"] == 1
    assert patch(client, keys, segment["id"], {}, "1").json() == segment
    assert len(audit(client, keys, segment["id"])) == 1


def test_two_patches_of_one_version_one_wins_one_412_one_audit_entry(client: TestClient, keys: Keys) -> None:
    for _ in range(5):
        segment = create(client, keys)
        barrier = threading.Barrier(2)

        def rename(name: str) -> Any:
            barrier.wait()
            return patch(client, keys, segment["id"], {"name": name}, "1")

        with ThreadPoolExecutor(2) as pool:
            responses = list(pool.map(rename, ["Left", "Right"]))
        assert sorted(r.status_code for r in responses) == [200, 412]
        winner = next(r.json() for r in responses if r.status_code == 200)
        entries = audit(client, keys, segment["id"])
        assert [(e["action"], e["version"]) for e in entries] == [("create", 1), ("update", 2)]
        assert entries[1]["after"]["name"] == winner["name"]
        assert client.get(f"/v1/segments/{segment['id']}", headers=keys.as_admin).json()["name"] == winner["name"]


def test_the_update_is_a_compare_and_set_in_sql(settings: Settings, segments: SegmentRepository, keys: Keys) -> None:
    """The writer that read version 1 before another committed version 2 still loses: its UPDATE
    waits on the row, then finds version 2 and writes nothing."""
    segment = segments.create(
        name="CAS", segment_type="new_customers", params={"max_days_since_signup": 3}, targeting={},
        labels={}, description=None, status="active", actor="test",
    )
    engine = create_engine(settings.database_url)
    blocker = engine.connect()
    transaction = blocker.begin()
    blocker.execute(text("UPDATE segments SET version = 2, name = 'Concurrent' WHERE id = :id"), {"id": segment.id})
    with ThreadPoolExecutor(1) as pool:
        loser = pool.submit(segments.update, segment.id, expected_version=1, changes={"name": "Loser"}, actor="test")
        deadline = time.monotonic() + 10
        while not _waits_on_a_lock(engine) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _waits_on_a_lock(engine), "the second writer should be waiting on the row"
        transaction.commit()
        with pytest.raises(StaleVersion) as raised:
            loser.result(timeout=10)
    blocker.close()
    engine.dispose()
    assert raised.value.current.version == 2
    assert segments.get(segment.id).name == "Concurrent"
    assert [e.version for e in segments.audit(segment.id)] == [1]


def _waits_on_a_lock(engine: Any) -> bool:
    with engine.connect() as connection:
        return bool(
            connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE 'UPDATE segments SET%'"
                )
            ).scalar()
        )


# --- archive and audit ------------------------------------------------------------------------------


def test_delete_archives_once_and_the_segment_stays_readable(client: TestClient, keys: Keys) -> None:
    segment = create(client, keys)
    assert_error(
        client.delete(f"/v1/segments/{segment['id']}", headers={**keys.as_admin, "If-Match": "7"}), 412, "version_mismatch"
    )
    for _ in range(2):  # idempotent: the second DELETE finds it archived and changes nothing
        response = client.delete(f"/v1/segments/{segment['id']}", headers=keys.as_admin)
        assert response.status_code == 204 and response.content == b""
    archived = client.get(f"/v1/segments/{segment['id']}", headers=keys.as_admin)
    assert (archived.json()["status"], archived.json()["version"]) == ("archived", 2)
    assert archived.headers["ETag"] == '"2"'
    assert [e["action"] for e in audit(client, keys, segment["id"])] == ["create", "archive"]
    conflict = patch(client, keys, segment["id"], {"name": "Back?"}, "2")
    assert_error(conflict, 409, "conflict")


def test_a_stale_if_match_on_an_archived_segment_is_412_and_the_current_one_204(client: TestClient, keys: Keys) -> None:
    segment = create(client, keys)
    url = f"/v1/segments/{segment['id']}"
    assert client.delete(url, headers=keys.as_admin).status_code == 204  # archived: now at version 2
    for stale in ("1", '"7"'):
        refused = client.delete(url, headers={**keys.as_admin, "If-Match": stale})
        error = assert_error(refused, 412, "version_mismatch")
        assert error["details"] == {"current_version": 2}
        assert refused.headers["ETag"] == '"2"'
    for current in ("2", '"2"', 'W/"2"', None):  # the current version, or none at all: still idempotent
        headers = {**keys.as_admin, **({"If-Match": current} if current is not None else {})}
        again = client.delete(url, headers=headers)
        assert again.status_code == 204 and again.content == b"", (current, again.text)
    assert [e["action"] for e in audit(client, keys, segment["id"])] == ["create", "archive"]


def test_delete_with_the_current_version_archives(client: TestClient, keys: Keys) -> None:
    segment = create(client, keys)
    response = client.delete(f"/v1/segments/{segment['id']}", headers={**keys.as_admin, "If-Match": '"1"'})
    assert response.status_code == 204


def test_every_change_leaves_one_audit_entry_with_before_and_after(client: TestClient, keys: Keys) -> None:
    created = create(client, keys, labels={"team": "growth"})
    renamed = patch(client, keys, created["id"], {"name": "Renamed", "params": {"max_days_since_signup": 9}}, "1").json()
    paused = patch(client, keys, created["id"], {"status": "paused"}, "2").json()
    assert client.delete(f"/v1/segments/{created['id']}", headers=keys.as_admin).status_code == 204
    archived = client.get(f"/v1/segments/{created['id']}", headers=keys.as_admin).json()

    entries = audit(client, keys, created["id"])
    assert [(e["action"], e["version"], e["actor"]) for e in entries] == [
        ("create", 1, "config-admin"), ("update", 2, "config-admin"), ("update", 3, "config-admin"),
        ("archive", 4, "config-admin"),
    ]
    states = [None, created, renamed, paused, archived]
    for entry, before, after in zip(entries, states, states[1:]):
        assert entry["before"] == _snapshot(before)
        assert entry["after"] == _snapshot(after)
    times = [datetime.fromisoformat(e["at"]) for e in entries]
    assert times == sorted(times)


def _snapshot(segment: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if segment is None else {k: v for k, v in segment.items() if k not in ("created_at", "updated_at")}


# --- listing ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def listed(client: TestClient, keys: Keys, segments: SegmentRepository) -> dict[str, dict[str, Any]]:
    """Seven segments under a label of their own, so other tests' segments do not show."""
    suite = uuid.uuid4().hex[:8]
    made = {}
    for i in range(6):
        labels = {"suite": suite, "team": "growth" if i % 2 == 0 else "crm"}
        if i < 2:
            labels["channel"] = "push"
        made[f"n{i}"] = create(client, keys, name=f"List {i}", labels=labels, status="paused" if i == 5 else "active")
    # The store filter needs a type with store_id; the repository stores what it is given.
    stored = segments.create(
        name="At store s1", segment_type="new_customers", params={"max_days_since_signup": 3},
        targeting={"store_id": "s1", "category": "pharmacy"}, labels={"suite": suite, "team": "growth"},
        description=None, status="active", actor="test",
    )
    made["store"] = stored.model_dump(mode="json")
    client.delete(f"/v1/segments/{made['n4']['id']}", headers=keys.as_admin)
    return {"suite": suite, **made}  # type: ignore[dict-item]


def list_all(client: TestClient, keys: Keys, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/v1/segments", params=params, headers=keys.as_admin)
    assert response.status_code == 200, response.text
    return response.json()["segments"]


def test_paging_visits_every_segment_once_in_id_order(client: TestClient, keys: Keys, listed: dict[str, Any]) -> None:
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"label": f"suite:{listed['suite']}", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/segments", params=params, headers=keys.as_admin).json()
        pages += 1
        seen.extend(s["id"] for s in page["segments"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(page["segments"]) == 2
    expected = sorted(s["id"] for k, s in listed.items() if k not in ("suite", "n4"))  # archived: not by default
    assert seen == expected
    assert pages == 3  # six segments in pages of two: the third page knows it is the last


def test_filters_all_apply(client: TestClient, keys: Keys, listed: dict[str, Any]) -> None:
    suite = f"suite:{listed['suite']}"

    def ids(**params: Any) -> set[str]:
        return {s["id"] for s in list_all(client, keys, label=[suite, *params.pop("label", [])], **params)}

    def made(*names: str) -> set[str]:
        return {listed[n]["id"] for n in names}

    assert ids(label=["team:growth"]) == made("n0", "n2", "store")
    assert ids(label=["team:growth", "channel:push"]) == made("n0")
    assert ids(label=["team:growth", "team:crm"]) == set()  # all must hold: no segment has both
    assert ids(status="paused") == made("n5")
    assert ids(status="archived") == made("n4")
    assert ids(status=["active", "archived"]) == made("n0", "n1", "n2", "n3", "n4", "store")
    assert ids(store_id="s1") == made("store")
    assert ids(category="pharmacy") == made("store")
    assert ids(category="grocery") == set()
    assert ids(segment_type="new_customers") == made("n0", "n1", "n2", "n3", "n5", "store")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"label": "team"}, "label"),
        ({"label": "Team:x"}, "label"),
        ({"status": "deleted"}, "status"),
        ({"segment_type": "nope"}, "segment_type"),
        ({"store_id": "bad id"}, "store_id"),
        ({"category": "a\x00b"}, "category"),
        ({"country": "spain"}, "country"),
        # one value each, where FastAPI alone would keep the last one silently
        ({"segment_type": ["high_spenders", "new_customers"]}, "segment_type"),
        ({"city": ["Madrid", "Lisboa"]}, "city"),
        ({"limit": [1, 2]}, "limit"),
    ],
)
def test_bad_listing_parameters_name_the_parameter(client: TestClient, keys: Keys, params: dict, field: str) -> None:
    assert_error(client.get("/v1/segments", params=params, headers=keys.as_admin), 422, "invalid_input", field)


# --- bad input -------------------------------------------------------------------------------------

BAD_CREATES = [
    ({"segment_type": "nope"}, "segment_type"),
    ({"params": {"max_days_since_signup": 3, "colour": "red"}}, "params.colour"),
    ({"params": {"max_days_since_signup": "30"}}, "params.max_days_since_signup"),
    ({"params": {"max_days_since_signup": True}}, "params.max_days_since_signup"),
    ({"params": {"max_days_since_signup": 366}}, "params.max_days_since_signup"),
    ({"params": {"max_days_since_signup": 30, "max_orders": -1}}, "params.max_orders"),
    ({"params": {}}, "params.max_days_since_signup"),
    ({"params": {"max_days_since_signup": 3, "country": "Spain"}}, "params.country"),
    ({"params": {"max_days_since_signup": 3, "city": "Ma\x00drid"}}, "params.city"),
    ({"params": {"max_days_since_signup": 3, "city": "Ma\ndrid"}}, "params.city"),  # no list filter could find it
    ({"params": [1, 2]}, "params"),
    ({"labels": {"Team": "growth"}}, "labels.Team"),
    ({"labels": {"team": ""}}, "labels.team"),
    ({"labels": {"team": "x" * 129}}, "labels.team"),
    ({"labels": {"team": "line\nbreak"}}, "labels.team"),
    ({"labels": {f"k{i}": "v" for i in range(33)}}, "labels"),
    ({"labels": {"team": 5}}, "labels.team"),
    ({"name": ""}, "name"),
    ({"name": 5}, "name"),
    ({"name": None}, "name"),
    ({"name": "x" * 201}, "name"),
    ({"name": "a\x00b"}, "name"),
    ({"description": "a\x00b"}, "description"),
    ({"name": "Promo \u202eslaed"}, "name"),  # a bidi override: reads "Promo deals"
    ({"name": "Promo\u200b"}, "name"),
    ({"description": "line\nline \u2066x"}, "description"),
    ({"labels": {"team": "growth\ufeff"}}, "labels.team"),
    ({"params": {"max_days_since_signup": 3, "city": "Mad\u200drid"}}, "params.city"),
    ({"status": "archived"}, "status"),
    ({"colour": "red"}, "colour"),
]


@pytest.mark.parametrize(("fields", "field"), BAD_CREATES, ids=[f for _, f in BAD_CREATES])
def test_bad_segment_is_422_naming_the_field_and_nothing_is_stored(
    client: TestClient, keys: Keys, segments: SegmentRepository, fields: dict, field: str
) -> None:
    before = len(list_all(client, keys, status=["active", "paused", "archived"], limit=500))
    response = client.post("/v1/segments", json={**NEW_CUSTOMERS, **fields}, headers=keys.as_admin)
    assert_error(response, 422, "invalid_input", field)
    assert len(list_all(client, keys, status=["active", "paused", "archived"], limit=500)) == before


@pytest.mark.parametrize(
    "raw",
    [
        b'{"name": "x",',
        b"",
        b"[1, 2]",
        b'"just a string"',
        b'{"name": "\xff\xfe"}',
        b"[" * 5000 + b"]" * 5000,
        b'{"name": "x", "segment_type": "new_customers", "params": {"max_days_since_signup": NaN}}',
        b'{"name": "\\ud800", "segment_type": "new_customers", "params": {"max_days_since_signup": 3}}',
    ],
    ids=["truncated", "empty", "array", "string", "bad-utf8", "deep", "nan", "lone-surrogate"],
)
def test_a_body_that_is_not_a_segment_is_422(client: TestClient, keys: Keys, raw: bytes) -> None:
    for method, url in (("POST", "/v1/segments"), ("PATCH", f"/v1/segments/{create(client, keys)['id']}")):
        response = client.request(
            method, url, content=raw, headers={**keys.as_admin, "Content-Type": "application/json", "If-Match": "1"}
        )
        error = assert_error(response, 422, "invalid_input")
        assert error["details"][0]["field"] in ("body", "name", "params.max_days_since_signup")


NOT_JSON_CONTENT_TYPES = ["text/plain", "application/x-www-form-urlencoded", None, "application/jsonx", "json"]


@pytest.mark.parametrize("content_type", NOT_JSON_CONTENT_TYPES, ids=lambda c: c or "none")
def test_a_json_body_sent_as_another_media_type_is_415_naming_the_header(
    client: TestClient, keys: Keys, content_type: str | None
) -> None:
    segment = create(client, keys)
    calls = [
        ("POST", "/v1/segments", NEW_CUSTOMERS, keys.as_admin),
        ("PATCH", f"/v1/segments/{segment['id']}", {"name": "Renamed"}, {**keys.as_admin, "If-Match": "1"}),
        ("POST", "/v1/customers/segments:batch", {"customer_ids": ["c1"]}, keys.as_reader),
    ]
    for method, url, body, headers in calls:
        sent = {**headers, **({"Content-Type": content_type} if content_type is not None else {})}
        response = client.request(method, url, content=json.dumps(body).encode(), headers=sent)
        assert response.request.headers.get("content-type") == content_type  # none means none was sent
        error = assert_error(response, 415, "unsupported_media_type")
        assert "Content-Type" in error["message"] and "application/json" in error["message"], error
    assert client.get(f"/v1/segments/{segment['id']}", headers=keys.as_admin).json() == segment


def test_the_key_and_its_scope_are_checked_before_the_media_type(client: TestClient, keys: Keys) -> None:
    body = json.dumps(NEW_CUSTOMERS).encode()
    for path in ("/v1/segments", "/v1/customers/segments:batch"):
        assert_error(client.post(path, content=body, headers={"Content-Type": "text/plain"}), 401, "unauthorized")
    assert_error(
        client.post("/v1/segments", content=body, headers={**keys.as_reader, "Content-Type": "text/plain"}), 403, "forbidden"
    )


JSON_CONTENT_TYPES = ["application/json; charset=utf-8", "Application/JSON", "application/merge-patch+json"]


@pytest.mark.parametrize("content_type", JSON_CONTENT_TYPES)
def test_json_with_parameters_any_case_or_a_json_suffix_is_accepted(
    client: TestClient, keys: Keys, content_type: str
) -> None:
    headers = {**keys.as_admin, "Content-Type": content_type}
    created = client.post("/v1/segments", content=json.dumps(NEW_CUSTOMERS).encode(), headers=headers)
    assert created.status_code == 201, created.text
    url = f"/v1/segments/{created.json()['id']}"
    patched = client.patch(url, content=b'{"name": "Renamed"}', headers={**headers, "If-Match": "1"})
    assert (patched.status_code, patched.json()["name"]) == (200, "Renamed"), patched.text


def test_a_request_without_any_body_is_422_not_415(client: TestClient, keys: Keys) -> None:
    """No body, no media type to judge: the route says what is missing, as it did before."""
    segment = create(client, keys)
    for method, url, headers in (
        ("POST", "/v1/segments", keys.as_admin),
        ("PATCH", f"/v1/segments/{segment['id']}", {**keys.as_admin, "If-Match": "1"}),
        ("POST", "/v1/customers/segments:batch", keys.as_reader),
    ):
        assert_error(client.request(method, url, headers=headers), 422, "invalid_input", "body")


def test_an_oversized_body_is_413_whether_its_length_is_declared_or_not(client: TestClient, keys: Keys) -> None:
    body = json.dumps({**NEW_CUSTOMERS, "description": "x" * 70_000}).encode()
    declared = client.post("/v1/segments", content=body, headers={**keys.as_admin, "Content-Type": "application/json"})
    assert_error(declared, 413, "payload_too_large")
    chunked = client.post(
        "/v1/segments",
        content=iter([body[i : i + 8192] for i in range(0, len(body), 8192)]),
        headers={**keys.as_admin, "Content-Type": "application/json"},
    )
    assert "content-length" not in chunked.request.headers
    assert_error(chunked, 413, "payload_too_large")


def test_patch_rejects_what_create_rejects(client: TestClient, keys: Keys) -> None:
    segment = create(client, keys)
    for fields, field in BAD_CREATES:
        if field in ("segment_type", "colour"):
            continue  # a type that differs is its own rule; unknown fields: below
        assert_error(patch(client, keys, segment["id"], fields, "1"), 422, "invalid_input", field)
    assert_error(patch(client, keys, segment["id"], {"colour": "red"}, "1"), 422, "invalid_input", "colour")
    assert client.get(f"/v1/segments/{segment['id']}", headers=keys.as_admin).json() == segment


def test_generated_requests_never_meet_a_server_error(settings: Settings, keys: Keys) -> None:
    """Schemathesis generates valid and invalid requests from the OpenAPI document for every config
    endpoint: each answers below 500, errors in the API's shape."""
    app = create_app(settings)
    failures: list[tuple[Any, ...]] = []
    with TestClient(app) as client:
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        for result in schema.get_all_operations():
            operation = result.ok()
            if not re.fullmatch(r"/v1/segment-types|/v1/segments(/\{segment_id\}(/audit)?)?", operation.path):
                continue
            # Half the id-paths hit a real segment, so that their bodies reach validation and storage.
            real = {"segment_id": create(client, keys)["id"]} if "{segment_id}" in operation.path else None
            for mode, path_parameters in ((GenerationMode.POSITIVE, real), (GenerationMode.NEGATIVE, None)):

                @given(case=operation.as_strategy(mode, path_parameters=path_parameters))
                @examples(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
                def call(case: Any) -> None:
                    response = case.call(headers={**(case.headers or {}), **keys.as_admin})
                    if response.status_code >= 500 or (response.status_code >= 400 and "error" not in response.json()):
                        failures.append((case.method, case.formatted_path, case.query, case.body, response.text[:200]))

                call()
    assert failures == []


# --- secrets ---------------------------------------------------------------------------------------


def test_keys_never_reach_the_logs_nor_the_answers(
    settings: Settings, keys: Keys, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    answers = []
    with TestClient(create_app(settings)) as client:
        segment = create(client, keys)
        answers += [
            client.get(f"/v1/segments/{segment['id']}", headers=keys.as_admin),
            client.get("/v1/customers/c1/segments", headers=keys.as_reader),
            client.post("/v1/segments", json={"name": 1}, headers=keys.as_admin),
            client.patch(f"/v1/segments/{segment['id']}", json={"name": "x"}, headers={**keys.as_admin, "If-Match": "9"}),
            client.get("/v1/segments", headers=keys.as_reader),
            client.get("/v1/segments", headers={"Authorization": f"Bearer {keys.admin}x"}),
        ]
        answers.append(client.get(f"/v1/segments/{segment['id']}/audit", headers=keys.as_admin))
    captured = capfd.readouterr()
    for token in (keys.admin, keys.reader, keys.admin[4:20]):
        assert token not in caplog.text
        assert token not in captured.out + captured.err
        assert all(token not in a.text and token not in str(a.headers) for a in answers)


def test_cli_creates_lists_and_revokes_keys_and_stores_only_a_hash(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEGMENTATION_DATABASE_URL", settings.database_url)
    get_settings.cache_clear()
    runner = CliRunner()
    name = f"cli-{uuid.uuid4().hex[:6]}"
    try:
        created = runner.invoke(cli, ["api-keys", "create", "--name", name, "--scope", "admin"])
        assert created.exit_code == 0, created.output
        token = created.output.strip()
        assert token.startswith("sgk_") and len(token) >= 40
        again = runner.invoke(cli, ["api-keys", "create", "--name", name, "--scope", "read"])
        assert again.exit_code == 1 and "exists already" in again.output
        assert runner.invoke(cli, ["api-keys", "create", "--name", "x", "--scope", "root"]).exit_code == 1
        assert runner.invoke(cli, ["api-keys", "create", "--name", "two words", "--scope", "read"]).exit_code == 1

        listing = runner.invoke(cli, ["api-keys", "list"])
        line = next(l for l in listing.output.splitlines() if l.startswith(name))
        assert "admin" in line and "never" in line and line.endswith("active")
        assert token not in listing.output

        engine = create_engine(settings.database_url)
        with engine.connect() as connection:
            stored = [tuple(map(str, r)) for r in connection.execute(text("SELECT * FROM api_keys"))]
        engine.dispose()
        assert not any(token in value or token[4:] in value for row in stored for value in row)

        assert runner.invoke(cli, ["api-keys", "revoke", "--name", name]).exit_code == 0
        assert runner.invoke(cli, ["api-keys", "revoke", "--name", name]).exit_code == 1
        assert "revoked" in next(l for l in runner.invoke(cli, ["api-keys", "list"]).output.splitlines() if l.startswith(name))
    finally:
        get_settings.cache_clear()


# --- archived segments leave lookups -----------------------------------------------------------------

PARTITION = "2026-11-25"
T = datetime(2026, 11, 26, tzinfo=timezone.utc)


def test_an_archived_segment_leaves_lookups_of_every_api_process(settings: Settings, keys: Keys) -> None:
    """One process archives; another, which only re-reads archived ids, stops showing it within
    its refresh interval, without a new calculation."""
    from cli.runs import materialize_partition
    from tests.lake_builder import write_lake

    write_lake(
        Path(settings.lake_uri),
        customers=[("c_new", T - timedelta(days=2), "ES", "Madrid"), ("c_old", T - timedelta(days=400), "ES", "Madrid")],
        stores=[("s1", "Farmacia Sol", "pharmacy", "Madrid", "ES")],
        orders=[("o1", "c_old", "s1", T - timedelta(days=3), 10.0, "delivered")],
    )
    refresh = 0.5
    lookups = "/v1/customers/c_new/segments"
    with TestClient(create_app(settings)) as admin_process, TestClient(
        create_app(settings.model_copy(update={"archived_refresh_seconds": refresh}))
    ) as reader_process:
        kept = create(admin_process, keys, name="Kept")
        archived = create(admin_process, keys, name="Archived")
        outcome = materialize_partition(settings, PARTITION, ["new_customers"])
        assert outcome.success, "\n".join(outcome.summary_lines)

        def served() -> set[str]:
            response = reader_process.get(lookups, headers=keys.as_reader)
            assert response.status_code == 200, response.text
            return {s["segment_id"] for s in response.json()["segments"]}

        assert {kept["id"], archived["id"]} <= served()
        assert admin_process.delete(f"/v1/segments/{archived['id']}", headers=keys.as_admin).status_code == 204
        deleted_at = time.monotonic()
        while archived["id"] in served():
            assert time.monotonic() - deleted_at < 10 * refresh + 5, "still served long after the refresh interval"
            time.sleep(0.05)
        assert kept["id"] in served()
        # Gone from lookups, not from the config store.
        assert admin_process.get(f"/v1/segments/{archived['id']}", headers=keys.as_admin).json()["status"] == "archived"


def test_a_segment_stored_before_a_rule_is_still_read_listed_and_computed(
    client: TestClient, keys: Keys, segments: SegmentRepository
) -> None:
    # Stored as an older version of the API let it be: a tab in its category. Reads never re-validate.
    params = {"min_orders": 1, "lookback_days": 7, "category": "Toys\tKids"}
    targeting = {"store_id": None, "category": "Toys\tKids", "city": None, "country": None}
    stored = segments.create(
        name="older", segment_type="frequent_buyers", params=params, targeting=targeting,
        labels={"era": "before"}, description=None, status="active", actor="an older release",
    )
    read = client.get(f"/v1/segments/{stored.id}", headers=keys.as_admin)
    assert read.status_code == 200 and read.json()["category"] == "Toys\tKids"
    listed = client.get("/v1/segments", params={"label": "era:before"}, headers=keys.as_admin)
    assert listed.status_code == 200 and [s["id"] for s in listed.json()["segments"]] == [stored.id]
    assert stored.id in {s.id for s in segments.active_of_type("frequent_buyers")}
    archived = client.delete(f"/v1/segments/{stored.id}", headers=keys.as_admin)
    assert archived.status_code == 204


def test_a_delete_character_in_a_targeting_param_is_a_422_not_a_500(client: TestClient, keys: Keys) -> None:
    body = {"name": "toys", "segment_type": "frequent_buyers", "params": {"min_orders": 1, "lookback_days": 7, "category": "Toys\x7f"}}
    response = client.post("/v1/segments", json=body, headers=keys.as_admin)
    assert_error(response, 422, "invalid_input", "params.category")


def test_a_name_with_a_bidi_override_is_422_naming_name_and_the_character_and_nothing_is_stored(
    client: TestClient, keys: Keys, settings: Settings
) -> None:
    name = f"Promo {uuid.uuid4().hex[:8]} \u202eslaed"
    response = client.post("/v1/segments", json={**NEW_CUSTOMERS, "name": name}, headers=keys.as_admin)
    error = assert_error(response, 422, "invalid_input", "name")
    assert "U+202E" in error["details"][0]["message"] and "position 15" in error["details"][0]["message"], error
    engine = create_engine(settings.database_url)
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT count(*) FROM segments WHERE name = :name"), {"name": name}).scalar()
    engine.dispose()
    assert stored == 0


def test_a_segment_named_before_the_visible_text_rule_is_still_read_listed_and_changed(
    client: TestClient, keys: Keys, segments: SegmentRepository
) -> None:
    era = f"before\u200b{uuid.uuid4().hex[:8]}"
    stored = segments.create(
        name="older \u202eredlo", segment_type="new_customers", params={"max_days_since_signup": 3, "max_orders": 0},
        targeting={"store_id": None, "category": None, "city": None, "country": None},
        labels={"era": era}, description="\u2066x", status="active", actor="an older release",
    )
    read = client.get(f"/v1/segments/{stored.id}", headers=keys.as_admin)
    assert read.status_code == 200 and read.json()["name"] == "older \u202eredlo"
    assert [s["id"] for s in list_all(client, keys, label=f"era:{era}")] == [stored.id]
    paused = patch(client, keys, stored.id, {"status": "paused"}, "1")  # a change that leaves the name alone
    assert paused.status_code == 200 and paused.json()["name"] == "older \u202eredlo", paused.text
    assert client.delete(f"/v1/segments/{stored.id}", headers=keys.as_admin).status_code == 204
