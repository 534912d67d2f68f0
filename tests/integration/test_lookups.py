"""Lookups on the real servers, over memberships published straight through the index
writer: small chunk documents, so that every segment of some size spans several of them.

Expected answers are computed here, from the memberships the test wrote, with none of the
serving code.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from elasticsearch import Elasticsearch
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from api.main import create_app
from resources.config_store.api_keys import ApiKeyRepository
from resources.config_store.database import session_factory
from resources.names import CacheKind, lookup_key, served_indices_key, type_alias
from resources.serving.export import ExportCursor
from resources.settings import Settings
from tests.published_segments import CALCULATED_AT, publish
from tests.redis_servers import cache_redis, coordination_redis

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings(settings_on_each_redis: Settings) -> Settings:
    """This module runs on a plain Redis, then on a Redis Cluster."""
    return settings_on_each_redis

CHUNK = 7
CUSTOMERS = [f"cust-{i:04d}" for i in range(300)]
CITIES = ["Madrid", "Lisboa", None]


def make_segments(seed: int) -> dict[str, tuple[dict[str, Any], list[str]]]:
    rng = random.Random(seed)
    segments: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for n in range(12):
        attributes: dict[str, Any] = {"name": f"segment {n}", "city": CITIES[n % 3]}
        if n % 4 == 0:
            attributes["labels"] = {"team": "growth", "tier": str(n % 8)}
        if n % 3 == 1:
            attributes.update(store_id="s1", category="pharmacy", country="ES")
        size = [0, 1, CHUNK, CHUNK + 1, 150][n % 5]
        segments[f"seg-{seed}-{n:02d}"] = (attributes, rng.sample(CUSTOMERS, size))
    return segments


FIRST = make_segments(1)
FREQUENT = {  # a second segment type, in its own index behind the same read alias
    "seg-f-1": ({"name": "frequent", "store_id": "s2", "category": "grocery"}, CUSTOMERS[:40]),
}


def expected_segments(customer_id: str, published: dict[str, dict[str, tuple[dict[str, Any], list[str]]]]) -> list[dict[str, Any]]:
    found = []
    for segment_type, segments in published.items():
        for segment_id, (attributes, members) in segments.items():
            if customer_id in members:
                found.append(
                    {
                        "segment_id": segment_id,
                        "name": attributes["name"],
                        "segment_type": segment_type,
                        "store_id": attributes.get("store_id"),
                        "category": attributes.get("category"),
                        "city": attributes.get("city"),
                        "country": attributes.get("country"),
                        "labels": attributes.get("labels", {}),
                        "calculated_at": CALCULATED_AT,
                    }
                )
    return sorted(found, key=lambda s: s["segment_id"])


@pytest.fixture(scope="module")
def served(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str], Settings]]:
    # Generation read on every request here, so that a switch shows at once; a roomy time budget,
    # since this machine is shared (the budget itself is tested in test_serving_resilience.py).
    settings = settings.model_copy(
        update={
            "lookup_generation_refresh_seconds": 0.0,
            "api_search_budget_seconds": 5.0,
            "state_dir": Path(tmp_path_factory.mktemp("state")),
        }
    )
    publish(settings, "new_customers", FIRST, chunk_size=CHUNK)
    publish(settings, "frequent_buyers", FREQUENT, chunk_size=CHUNK)
    key = ApiKeyRepository(session_factory(settings.database_url)).create("lookups-reader", "read")
    with TestClient(create_app(settings)) as client:
        yield client, {"Authorization": f"Bearer {key}"}, settings


PUBLISHED = {"new_customers": FIRST, "frequent_buyers": FREQUENT}


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_every_customer_gets_exactly_its_segments(served) -> None:
    client, headers, _ = served
    for customer_id in CUSTOMERS + ["nobody-at-all"]:
        response = client.get(f"/v1/customers/{customer_id}/segments", headers=headers)
        assert response.status_code == 200, response.text
        assert response.json() == {"customer_id": customer_id, "segments": expected_segments(customer_id, PUBLISHED)}


@pytest.mark.parametrize(
    "params, keep",
    [
        ({"city": "Madrid"}, lambda s: s["city"] == "Madrid"),
        ({"segment_type": ["frequent_buyers"]}, lambda s: s["segment_type"] == "frequent_buyers"),
        ({"segment_type": ["frequent_buyers", "new_customers"]}, lambda s: True),
        ({"store_id": "s1", "category": "pharmacy", "country": "ES"}, lambda s: s["store_id"] == "s1"),
        ({"label": ["team:growth"]}, lambda s: s["labels"].get("team") == "growth"),
        ({"label": ["team:growth", "tier:4"]}, lambda s: s["labels"] == {"team": "growth", "tier": "4"}),
        ({"category": "grocery", "city": "Madrid"}, lambda s: False),
        ({"label": ["tier:3", "tier:4"]}, lambda s: False),  # all must match: no segment has both values
    ],
)
def test_filters(served, params, keep) -> None:
    client, headers, _ = served
    matched_something = False
    for customer_id in CUSTOMERS[:60]:
        want = [s for s in expected_segments(customer_id, PUBLISHED) if keep(s)]
        matched_something |= bool(want)
        got = client.get(f"/v1/customers/{customer_id}/segments", params=params, headers=headers).json()["segments"]
        assert got == want, (customer_id, params)
        batch = client.post("/v1/customers/segments:batch", json={"customer_ids": [customer_id], **params}, headers=headers)
        assert batch.json()["results"][customer_id] == want
    if params not in ({"category": "grocery", "city": "Madrid"}, {"label": ["tier:3", "tier:4"]}):
        assert matched_something, "the filter case selects nothing: it would prove nothing"


@pytest.mark.parametrize(
    "params, field",
    [
        ({"label": "no-colon"}, "label"),
        # Only `segment_type` and `label` repeat; another filter given twice is refused, not
        # silently read as its last value.
        ({"store_id": ["s1", "s2"]}, "store_id"),
        ({"segment_type": ["new_customers", "high_spenders"], "country": ["ES", "PT"]}, "country"),
    ],
)
def test_a_bad_filter_names_the_field(served, params, field) -> None:
    client, headers, _ = served
    response = client.get("/v1/customers/cust-0001/segments", params=params, headers=headers)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == field


def test_batch_answers_every_customer_with_one_search_for_the_misses(served) -> None:
    client, headers, _ = served
    fresh = [f"batch-only-{i}" for i in range(50)] + CUSTOMERS[250:]  # none looked up before
    searches = metric("segmentation_elasticsearch_request_duration_seconds_count", operation="customer_segments", outcome="ok")
    response = client.post("/v1/customers/segments:batch", json={"customer_ids": fresh}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["results"] == {c: expected_segments(c, PUBLISHED) for c in fresh}
    after = metric("segmentation_elasticsearch_request_duration_seconds_count", operation="customer_segments", outcome="ok")
    assert after - searches == 1

    # Now all cached: no search at all, same answer.
    again = client.post("/v1/customers/segments:batch", json={"customer_ids": fresh + fresh[:5]}, headers=headers)
    assert again.json()["results"] == response.json()["results"]
    assert metric("segmentation_elasticsearch_request_duration_seconds_count", operation="customer_segments", outcome="ok") == after


def test_a_repeated_lookup_is_a_cache_hit(served) -> None:
    client, headers, _ = served

    def hits() -> float:  # this process's near cache, or Redis
        return sum(metric("segmentation_cache_lookups_total", kind="m", result=r) for r in ("hit", "hit_near"))

    def searches() -> float:
        return metric("segmentation_elasticsearch_request_duration_seconds_count", operation="customer_segments", outcome="ok")

    client.get("/v1/customers/cust-0007/segments", headers=headers)
    before, searched = hits(), searches()
    response = client.get("/v1/customers/cust-0007/segments", headers=headers)
    assert response.json()["segments"] == expected_segments("cust-0007", PUBLISHED)
    assert hits() == before + 1
    assert searches() == searched


def test_the_cache_holds_segment_ids_by_type_not_the_answer(served) -> None:
    client, headers, settings = served
    customer = "cust-0011"
    response = client.get(f"/v1/customers/{customer}/segments", headers=headers)
    cache = cache_redis(settings)
    key = lookup_key(settings.index_prefix, CacheKind.MEMBERSHIPS, customer)
    deadline = time.monotonic() + 5
    while (stored := cache.get(key)) is None and time.monotonic() < deadline:
        time.sleep(0.01)  # written behind the answer
    entry = orjson.loads(stored)
    recorded = coordination_redis(settings).hgetall(served_indices_key(settings.index_prefix))
    es = Elasticsearch(settings.elasticsearch_url)
    expected = {}
    for segment_type, segments in PUBLISHED.items():
        token, index = recorded[segment_type.encode()].decode().split(" ")
        assert index == next(iter(es.indices.get_alias(name=type_alias(settings.index_prefix, segment_type))))
        expected[token] = sorted(s for s, (_, members) in segments.items() if customer in members)
    assert entry == expected  # every type, the empty ones too: what the entry knows is absent
    assert response.json()["segments"] == expected_segments(customer, PUBLISHED)


@pytest.mark.parametrize(
    "body, field",
    [
        ({"customer_ids": [f"c{i}" for i in range(1001)]}, "customer_ids"),
        ({"customer_ids": ["ok", "not ok"]}, "customer_ids.1"),
        ({"customer_ids": ["ok"], "colour": "red"}, "colour"),
        ({}, "customer_ids"),
        ({"customer_ids": ["ok"], "label": ["nocolon"]}, "label"),
    ],
)
def test_bad_batches_are_rejected_with_the_field_named(served, body, field) -> None:
    client, headers, _ = served
    response = client.post("/v1/customers/segments:batch", json=body, headers=headers)
    assert response.status_code == 422, response.text
    assert field in [d["field"] for d in response.json()["error"]["details"]]


def test_a_batch_sent_as_json_with_a_charset_is_answered_and_as_text_is_415(served) -> None:
    client, headers, _ = served
    body = orjson.dumps({"customer_ids": CUSTOMERS[:20]})
    with_charset = client.post(
        "/v1/customers/segments:batch", content=body, headers={**headers, "Content-Type": "application/json; charset=utf-8"}
    )
    assert with_charset.status_code == 200, with_charset.text
    assert with_charset.json()["results"] == {c: expected_segments(c, PUBLISHED) for c in CUSTOMERS[:20]}
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        sent = {**headers, **({"Content-Type": content_type} if content_type else {})}
        refused = client.post("/v1/customers/segments:batch", content=body, headers=sent)
        assert refused.status_code == 415, (content_type, refused.text)
        assert refused.json()["error"]["code"] == "unsupported_media_type"
        assert "Content-Type" in refused.json()["error"]["message"]


def test_membership(served) -> None:
    client, headers, _ = served
    segment_id, (_, members) = next((s, v) for s, v in FIRST.items() if len(v[1]) == 150)
    outsider = next(c for c in CUSTOMERS if c not in members)
    for customer_id, member in [(members[0], True), (members[-1], True), (outsider, False), ("nobody-at-all", False)]:
        response = client.get(f"/v1/segments/{segment_id}/members/{customer_id}", headers=headers)
        assert response.status_code == 200, response.text
        assert response.json() == {
            "segment_id": segment_id, "customer_id": customer_id, "member": member, "calculated_at": CALCULATED_AT
        }
    unknown = client.get("/v1/segments/seg-unknown/members/cust-0001", headers=headers)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"

    # "No" is cached as well as "yes": asked again, Elasticsearch is not.
    checks = metric("segmentation_elasticsearch_request_duration_seconds_count", operation="membership", outcome="ok")
    again = client.get(f"/v1/segments/{segment_id}/members/{outsider}", headers=headers)
    assert again.json()["member"] is False
    assert metric("segmentation_elasticsearch_request_duration_seconds_count", operation="membership", outcome="ok") == checks


def export(client: TestClient, headers: dict[str, str], segment_id: str, limit: int, cursor: str | None = None) -> tuple[list[str], int]:
    ids: list[str] = []
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        response = client.get(f"/v1/segments/{segment_id}/members", params=params, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["segment_id"] == segment_id
        assert len(page["customer_ids"]) <= limit
        ids += page["customer_ids"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            return ids, pages


@pytest.mark.parametrize("limit", [1, CHUNK - 1, CHUNK, CHUNK + 3, 1000])
def test_export_pages_through_every_member_once_across_chunk_documents(served, limit) -> None:
    client, headers, _ = served
    for segment_id, (_, members) in {**FIRST, **FREQUENT}.items():
        ids, pages = export(client, headers, segment_id, limit)
        assert ids == sorted(members), segment_id  # chunks hold consecutive slices of the sorted ids
        assert pages == max(1, -(-len(members) // limit)), (segment_id, limit)


def test_stats(served) -> None:
    client, headers, settings = served
    es = Elasticsearch(settings.elasticsearch_url)
    serving = sorted(es.indices.get_alias(name=f"{settings.index_prefix}-new_customers"))
    for segment_id, (_, members) in FIRST.items():
        body = client.get(f"/v1/segments/{segment_id}/stats", headers=headers).json()
        assert body == {"segment_id": segment_id, "member_count": len(members), "calculated_at": CALCULATED_AT, "index": serving[0]}
    assert client.get("/v1/segments/seg-unknown/stats", headers=headers).status_code == 404


@pytest.mark.parametrize(
    "params, field",
    [
        ({"limit": 0}, "limit"),
        ({"limit": 10_001}, "limit"),
        ({"limit": [10, 20]}, "limit"),
        ({"cursor": "garbage"}, "cursor"),
        ({"cursor": "W10"}, "cursor"),
    ],
)
def test_bad_export_parameters_are_rejected_with_the_field_named(served, params, field) -> None:
    client, headers, _ = served
    response = client.get("/v1/segments/seg-1-04/members", params=params, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == field


def test_a_cursor_of_another_segment_is_rejected(served) -> None:
    client, headers, _ = served
    cursor = client.get("/v1/segments/seg-1-04/members", params={"limit": 2}, headers=headers).json()["next_cursor"]
    response = client.get("/v1/segments/seg-1-09/members", params={"cursor": cursor}, headers=headers)
    assert response.status_code == 422
    assert "seg-1-04" in response.json()["error"]["message"]


def test_archived_segments_leave_every_lookup(served) -> None:
    client, headers, _ = served
    state = client.app.state.segmentation
    segment_id, (_, members) = next((s, v) for s, v in FIRST.items() if len(v[1]) == 150)
    customer_id = members[0]
    state.archived_segment_ids = {segment_id}
    try:
        segments = client.get(f"/v1/customers/{customer_id}/segments", headers=headers).json()["segments"]
        assert segment_id not in [s["segment_id"] for s in segments]
        assert segments == [s for s in expected_segments(customer_id, PUBLISHED) if s["segment_id"] != segment_id]
        batch = client.post("/v1/customers/segments:batch", json={"customer_ids": [customer_id]}, headers=headers).json()
        assert segment_id not in [s["segment_id"] for s in batch["results"][customer_id]]
        for path in (f"members/{customer_id}", "members", "stats"):
            assert client.get(f"/v1/segments/{segment_id}/{path}", headers=headers).status_code == 404, path
    finally:
        state.archived_segment_ids = set()


def test_lookups_need_a_read_key(served) -> None:
    client, _, _ = served
    for path in ("/v1/customers/cust-0001/segments", "/v1/segments/seg-1-04/members", "/v1/segments/seg-1-04/stats"):
        assert client.get(path).status_code == 401
    assert client.post("/v1/customers/segments:batch", json={"customer_ids": ["a"]}).status_code == 401


def test_a_switch_shows_the_new_calculation_and_open_exports_keep_theirs(served) -> None:
    """Runs last in this module: it replaces the served new_customers calculation."""
    client, headers, settings = served
    segment_id = next(s for s, v in FIRST.items() if len(v[1]) == 150)
    old_members = sorted(FIRST[segment_id][1])
    first_page = client.get(f"/v1/segments/{segment_id}/members", params={"limit": 10}, headers=headers).json()
    customer_id = old_members[0]
    assert client.get(f"/v1/customers/{customer_id}/segments", headers=headers).json()["segments"]  # now cached

    second = make_segments(1)
    second[segment_id] = (second[segment_id][0], [c for c in CUSTOMERS if c not in old_members][:20])
    old_index = client.get(f"/v1/segments/{segment_id}/stats", headers=headers).json()["index"]
    new_index = publish(settings, "new_customers", second, partition_key="2026-11-26", chunk_size=CHUNK)

    published = {"new_customers": second, "frequent_buyers": FREQUENT}
    # The process adopts the switch once it has the new index's catalog and its customers read again.
    deadline = time.monotonic() + 5
    while (answer := client.get(f"/v1/customers/{customer_id}/segments", headers=headers).json()["segments"]) == (
        expected_segments(customer_id, PUBLISHED)
    ):
        assert time.monotonic() < deadline, "the switch never showed"
        time.sleep(0.01)
    assert answer == expected_segments(customer_id, published)
    assert client.get(f"/v1/segments/{segment_id}/stats", headers=headers).json()["index"] == new_index

    # The export that started before the switch ends on the calculation it started on ...
    rest, _ = export(client, headers, segment_id, 10, first_page["next_cursor"])
    assert first_page["customer_ids"] + rest == old_members
    # ... a new one reads the new calculation ...
    assert export(client, headers, segment_id, 10)[0] == sorted(second[segment_id][1])
    # ... and once the old index is deleted, a cursor into it says so (chunk 5: read long ago, no
    # longer in the process's small chunk cache).
    Elasticsearch(settings.elasticsearch_url).indices.delete(index=old_index)
    cursor = ExportCursor(old_index, segment_id, 5, 0).encode()
    gone = client.get(f"/v1/segments/{segment_id}/members", params={"cursor": cursor}, headers=headers)
    assert gone.status_code == 410
    assert gone.json()["error"]["code"] == "cursor_expired"
