"""End to end on the real servers: a hand-made lake with every window edge, segments created
through the API, a partition materialized through Dagster, lookups through the alias.

Expected members come from `tests.reference`, which shares no code with the Spark job.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from cli.runs import materialize_partition
from resources.config_store.api_keys import ApiKeyRepository
from resources.config_store.database import session_factory
from resources.settings import Settings
from tests.lake_builder import write_lake
from tests.reference import ReferenceLake

pytestmark = pytest.mark.integration

PARTITION = "2026-11-25"
T = datetime(2026, 11, 26, tzinfo=timezone.utc)  # the end of the partition's window
US = timedelta(microseconds=1)
DAY = timedelta(days=1)

STORES = [
    ("s1", "Farmacia Sol", "pharmacy", "Madrid", "ES"),
    ("s2", "Super Norte", "grocery", "Barcelona", "ES"),
]
CUSTOMERS = [
    ("c_signup_at_t", T, "ES", "Madrid"),  # signup_at < T is required: out
    ("c_signup_just_before_t", T - US, "ES", "Madrid"),
    ("c_signup_at_30d", T - 30 * DAY, "ES", "Madrid"),  # exactly T - 30 days: in for N = 30
    ("c_signup_before_30d", T - 30 * DAY - US, "ES", "Barcelona"),  # out for N = 30, in for N = 31
    ("c_one_delivered", T - 5 * DAY, "ES", "Madrid"),
    ("c_one_cancelled", T - 5 * DAY, "ES", "Barcelona"),
    ("c_order_at_t", T - 5 * DAY, "PT", "Lisboa"),  # its order at T does not count
    ("c_order_unknown_store", T - 5 * DAY, "ES", "Madrid"),  # its order is at an unknown store
    ("c_two_delivered", T - 10 * DAY, "ES", "Barcelona"),
    ("c_old", T - 400 * DAY, "ES", "Madrid"),
    ("bad id", T - 2 * DAY, "ES", "Madrid"),  # invalid id: left out
    (None, T - 2 * DAY, "ES", "Madrid"),  # null key: left out
]
ORDERS = [
    ("o1", "c_one_delivered", "s1", T - 2 * DAY, 12.5, "delivered"),
    ("o2", "c_one_cancelled", "s2", T - 2 * DAY, 30.0, "cancelled"),
    ("o3", "c_order_at_t", "s1", T, 10.0, "delivered"),
    ("o4", "c_order_unknown_store", "s_missing", T - 1 * DAY, 10.0, "delivered"),
    ("o5", "c_two_delivered", "s2", T - 3 * DAY, 10.0, "delivered"),
    ("o6", "c_two_delivered", "s2", T - US, 10.0, "delivered"),
    ("o7", "c_old", "s1", T - 100 * DAY, 10.0, "delivered"),
]
SEGMENTS = [
    {"name": "30 days, no order", "params": {"max_days_since_signup": 30}},
    {"name": "31 days, one order", "params": {"max_days_since_signup": 31, "max_orders": 1}},
    {"name": "30 days in Madrid", "params": {"max_days_since_signup": 30, "max_orders": 5, "city": "Madrid"}, "labels": {"team": "partners"}},
    {"name": "one day", "params": {"max_days_since_signup": 1}},
    {"name": "Portugal, a year", "params": {"max_days_since_signup": 365, "max_orders": 0, "country": "PT"}},
    {"name": "Nobody", "params": {"max_days_since_signup": 1, "country": "FR"}},
]


@pytest.fixture(scope="module")
def published(settings: Settings):
    write_lake(Path(settings.lake_uri), customers=CUSTOMERS, stores=STORES, orders=ORDERS)
    keys = ApiKeyRepository(session_factory(settings.database_url))
    admin_key = keys.create("test-admin", "admin")
    read_key = keys.create("test-reader", "read")
    with TestClient(create_app(settings)) as client:
        created = {}
        for segment in SEGMENTS:
            response = client.post(
                "/v1/segments",
                json={"segment_type": "new_customers", **segment},
                headers={"Authorization": f"Bearer {admin_key}"},
            )
            assert response.status_code == 201, response.text
            created[response.json()["id"]] = segment
        outcome = materialize_partition(settings, PARTITION, ["new_customers"])
        assert outcome.success, "\n".join(outcome.summary_lines)
        yield client, created, read_key


def test_lookups_match_the_reference_for_every_customer(published, settings: Settings) -> None:
    client, created, read_key = published
    reference = ReferenceLake(Path(settings.lake_uri))
    expected: dict[str, set[str]] = {}
    for segment_id, segment in created.items():
        for customer_id in reference.members("new_customers", T, segment["params"]):
            expected.setdefault(customer_id, set()).add(segment_id)

    # The edges themselves, written out, so that a reference bug cannot hide a Spark bug.
    thirty_days = next(i for i, s in created.items() if s["name"] == "30 days, no order")
    assert {c for c, s in expected.items() if thirty_days in s} == {
        "c_signup_just_before_t", "c_signup_at_30d", "c_one_cancelled", "c_order_at_t", "c_order_unknown_store",
    }

    for customer_id in [c[0] for c in CUSTOMERS if c[0] not in (None, "bad id")] + ["c_unknown"]:
        response = client.get(f"/v1/customers/{customer_id}/segments", headers={"Authorization": f"Bearer {read_key}"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["customer_id"] == customer_id
        got = [s["segment_id"] for s in body["segments"]]
        assert got == sorted(expected.get(customer_id, set())), customer_id
        for segment in body["segments"]:
            assert segment["segment_type"] == "new_customers"
            assert segment["name"] == created[segment["segment_id"]]["name"]


def test_lookup_filters(published) -> None:
    client, created, read_key = published
    madrid = next(i for i, s in created.items() if s["name"] == "30 days in Madrid")
    headers = {"Authorization": f"Bearer {read_key}"}
    by_city = client.get("/v1/customers/c_signup_at_30d/segments", params={"city": "Madrid"}, headers=headers).json()
    assert [s["segment_id"] for s in by_city["segments"]] == [madrid]
    by_label = client.get("/v1/customers/c_signup_at_30d/segments", params={"label": "team:partners"}, headers=headers).json()
    assert [s["segment_id"] for s in by_label["segments"]] == [madrid]
    other_type = client.get("/v1/customers/c_signup_at_30d/segments", params={"segment_type": "high_spenders"}, headers=headers)
    assert other_type.json()["segments"] == []


def test_lookups_need_a_key(published) -> None:
    client, _, read_key = published
    assert client.get("/v1/customers/c_old/segments").status_code == 401
    assert client.get("/v1/customers/c_old/segments", headers={"Authorization": "Bearer nope"}).status_code == 401
    forbidden = client.post("/v1/segments", json={}, headers={"Authorization": f"Bearer {read_key}"})
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "forbidden"


def test_invalid_segment_is_rejected_with_the_field_named(published, settings: Settings) -> None:
    client, _, _ = published
    admin_key = ApiKeyRepository(session_factory(settings.database_url)).create("test-admin-2", "admin")
    headers = {"Authorization": f"Bearer {admin_key}"}
    out_of_range = client.post(
        "/v1/segments",
        json={"name": "x", "segment_type": "new_customers", "params": {"max_days_since_signup": 366}},
        headers=headers,
    )
    assert out_of_range.status_code == 422
    assert "params.max_days_since_signup" in out_of_range.json()["error"]["message"]
    unknown_param = client.post(
        "/v1/segments",
        json={"name": "x", "segment_type": "new_customers", "params": {"max_days_since_signup": 3, "colour": "red"}},
        headers=headers,
    )
    assert unknown_param.status_code == 422
    assert "params.colour" in unknown_param.json()["error"]["message"]
    unknown_type = client.post("/v1/segments", json={"name": "x", "segment_type": "nope", "params": {}}, headers=headers)
    assert unknown_type.status_code == 422
    assert "segment_type" in unknown_type.json()["error"]["message"]
