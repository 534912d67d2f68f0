"""The serving guarantees on the real servers: Redis down, Elasticsearch down or hanging, recovery, restarts.

The API under test reaches Elasticsearch and Redis through TCP proxies that the tests cut, so
the shared servers keep running for everyone else.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from elasticsearch import Elasticsearch
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from api.main import create_app
from resources.config_store.api_keys import ApiKeyRepository
from resources.config_store.database import session_factory
from resources.names import CacheKind, generation_key, lookup_key, served_index_value, served_indices_key, type_alias
from resources.serving.readiness import RESULT_SECONDS
from resources.settings import Settings
from tests.published_segments import publish
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

BUDGET = 0.5  # tight enough to see; loose enough for this shared machine when Elasticsearch is up
ROOMY_BUDGET = 5.0  # where Elasticsearch is meant to answer, so that load never fails a test
OPEN_SECONDS = 1.0
# A 503 must come back about as fast as the budget; the rest is this shared machine's slack.
FAIL_FAST_SECONDS = BUDGET + 0.75

SEGMENTS = {
    "seg-a": ({"name": "a", "city": "Madrid"}, [f"c{i:03d}" for i in range(0, 60)]),
    "seg-b": ({"name": "b"}, [f"c{i:03d}" for i in range(40, 100)]),
}


def segment_ids_of(customer_id: str) -> list[str]:
    return sorted(s for s, (_, members) in SEGMENTS.items() if customer_id in members)


def redis_port(settings: Settings) -> int:
    return int(redis.Redis.from_url(settings.redis_url).connection_pool.connection_kwargs["port"])


@pytest.fixture(scope="module")
def proxies(settings: Settings) -> Iterator[tuple[TcpProxy, TcpProxy]]:
    es_port = int(settings.elasticsearch_url.rsplit(":", 1)[1].split("/")[0])
    es_proxy, redis_proxy = TcpProxy("127.0.0.1", es_port), TcpProxy("127.0.0.1", redis_port(settings))
    yield es_proxy, redis_proxy
    es_proxy.close()
    redis_proxy.close()


@pytest.fixture(scope="module")
def setup(settings: Settings, proxies, tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict[str, str]]:
    publish(settings, "new_customers", SEGMENTS, chunk_size=25)
    es_proxy, redis_proxy = proxies
    redis_url = settings.redis_url.replace(f":{redis_port(settings)}", f":{redis_proxy.port}")
    proxied = settings.model_copy(
        update={
            "elasticsearch_url": f"http://{es_proxy.url_authority}",
            "redis_url": redis_url,
            "api_search_budget_seconds": ROOMY_BUDGET,
            "api_breaker_failures": 3,
            "api_breaker_open_seconds": OPEN_SECONDS,
            "lookup_generation_refresh_seconds": 0.0,
            "lookup_near_cache_entries": 0,  # Redis itself is under test here
            "state_dir": Path(tmp_path_factory.mktemp("state")),
        }
    )
    key = ApiKeyRepository(session_factory(settings.database_url)).create("resilience-reader", "read")
    return proxied, {"Authorization": f"Bearer {key}"}


def serve(setup, proxies, budget: float) -> Iterator[tuple[TestClient, dict[str, str], TcpProxy, TcpProxy]]:
    proxied, headers = setup
    es_proxy, redis_proxy = proxies
    es_proxy.forward()
    redis_proxy.forward()
    with TestClient(create_app(proxied.model_copy(update={"api_search_budget_seconds": budget}))) as client:
        yield client, headers, es_proxy, redis_proxy
    es_proxy.forward()
    redis_proxy.forward()


@pytest.fixture
def api(setup, proxies) -> Iterator[tuple[TestClient, dict[str, str], TcpProxy, TcpProxy]]:
    yield from serve(setup, proxies, BUDGET)


@pytest.fixture
def api_roomy(setup, proxies) -> Iterator[tuple[TestClient, dict[str, str], TcpProxy, TcpProxy]]:
    yield from serve(setup, proxies, ROOMY_BUDGET)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def lookup(client: TestClient, headers: dict[str, str], customer_id: str, **params: Any) -> tuple[int, Any, float, dict[str, str]]:
    started = time.perf_counter()
    response = client.get(f"/v1/customers/{customer_id}/segments", params=params, headers=headers)
    return response.status_code, response.json(), time.perf_counter() - started, dict(response.headers)


def wait_until_cached(settings: Settings, *items: str, kind: CacheKind = CacheKind.MEMBERSHIPS) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    if kind is CacheKind.SEGMENT:  # summaries are cached under the generation
        generation = int(client.get(generation_key(settings.index_prefix)))
        items = tuple(f"{generation}:{item}" for item in items)
    keys = [lookup_key(settings.index_prefix, kind, item) for item in items]
    deadline = time.monotonic() + 5
    while client.exists(*keys) < len(keys):
        assert time.monotonic() < deadline, f"{items} never cached"
        time.sleep(0.01)


def forget_cached_lookups(settings: Settings) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    for key in client.scan_iter(f"{settings.index_prefix}:lookup:*"):
        client.unlink(key)


def assert_correct(client: TestClient, headers: dict[str, str], customer_id: str) -> None:
    status, body, _, _ = lookup(client, headers, customer_id)
    assert status == 200, body
    assert [s["segment_id"] for s in body["segments"]] == segment_ids_of(customer_id)


@pytest.mark.parametrize("failure", ["refuse", "swallow"])
def test_with_redis_unreachable_lookups_stay_correct_and_the_errors_are_counted(api_roomy, failure) -> None:
    client, headers, _, redis_proxy = api_roomy
    errors_before = sum(metric("segmentation_cache_errors_total", operation=op) for op in ("served", "generation", "get", "set"))
    getattr(redis_proxy, failure)()
    for customer_id in ["c000", "c050", "c099", "c200"]:
        for _ in range(3):  # again and again: never a cached answer, always the right one
            status, body, elapsed, _ = lookup(client, headers, customer_id)
            assert status == 200, body
            assert [s["segment_id"] for s in body["segments"]] == segment_ids_of(customer_id)
            assert elapsed < 2  # Redis timeouts (0.25 s) at most, until its breaker opens
    batch = client.post("/v1/customers/segments:batch", json={"customer_ids": ["c010", "c045"]}, headers=headers)
    assert {c: [s["segment_id"] for s in v] for c, v in batch.json()["results"].items()} == {
        "c010": segment_ids_of("c010"), "c045": segment_ids_of("c045")
    }
    errors_after = sum(metric("segmentation_cache_errors_total", operation=op) for op in ("served", "generation", "get", "set"))
    assert errors_after > errors_before

    # Redis back: the cache is used again, with no restart.
    redis_proxy.forward()
    time.sleep(OPEN_SECONDS + 0.1)  # the Redis breaker's open period
    assert_correct(client, headers, "c007")
    hits = metric("segmentation_cache_lookups_total", kind="m", result="hit")
    assert_correct(client, headers, "c007")
    assert metric("segmentation_cache_lookups_total", kind="m", result="hit") == hits + 1


def test_with_elasticsearch_down_cached_answers_are_served_and_the_rest_fail_fast(api, api_roomy, settings: Settings) -> None:
    # Cached by another API process (same Redis, same generation) ...
    warm, headers, _, _ = api_roomy
    assert_correct(warm, headers, "c041")
    assert warm.post("/v1/customers/segments:batch", json={"customer_ids": ["c001", "c002"]}, headers=headers).status_code == 200
    wait_until_cached(settings, "c041", "c001", "c002")  # written behind the answers
    # ... and served by this one, which never reached Elasticsearch.
    client, headers, es_proxy, _ = api
    es_proxy.refuse()

    assert_correct(client, headers, "c041")
    assert lookup(client, headers, "c041", city="Madrid")[1]["segments"][0]["segment_id"] == "seg-a"  # filters too
    cached_batch = client.post("/v1/customers/segments:batch", json={"customer_ids": ["c001", "c041"]}, headers=headers)
    assert cached_batch.status_code == 200
    assert list(cached_batch.json()["results"]) == ["c001", "c041"]

    for attempt in range(6):  # past the breaker's threshold: then it does not even try
        status, body, elapsed, response_headers = lookup(client, headers, f"c0{60 + attempt}")
        assert status == 503, body
        assert body["error"]["code"] == "unavailable"
        assert int(response_headers["retry-after"]) >= 1
        assert elapsed < FAIL_FAST_SECONDS, attempt
    assert metric("segmentation_circuit_breaker_state", circuit="elasticsearch") == 2

    partly_cached = client.post("/v1/customers/segments:batch", json={"customer_ids": ["c001", "c077"]}, headers=headers)
    assert partly_cached.status_code == 503  # all or nothing: a missing customer is not "no segments"
    assert "retry-after" in partly_cached.headers
    assert_correct(client, headers, "c041")  # cached answers still flow with the breaker open


def test_with_elasticsearch_down_membership_and_stats_answer_from_the_cache_and_the_rest_fail_fast(
    api, api_roomy, settings: Settings
) -> None:
    warm, headers, _, _ = api_roomy
    stats = warm.get("/v1/segments/seg-a/stats", headers=headers)
    assert stats.status_code == 200 and stats.json()["member_count"] == 60
    assert_correct(warm, headers, "c042")
    outside = warm.get("/v1/segments/seg-a/members/c081", headers=headers)  # c081 is only in seg-b
    assert outside.status_code == 200 and outside.json()["member"] is False
    wait_until_cached(settings, "c042")
    wait_until_cached(settings, "seg-a", kind=CacheKind.SEGMENT)
    wait_until_cached(settings, f"{stats.json()['index']}:seg-a:c081", kind=CacheKind.HOLDS)
    client, headers, es_proxy, _ = api
    es_proxy.refuse()

    assert client.get("/v1/segments/seg-a/stats", headers=headers).json() == stats.json()
    member = client.get("/v1/segments/seg-b/members/c042", headers=headers)
    assert member.status_code == 200 and member.json()["member"] is True  # from c042's cached list
    assert client.get("/v1/segments/seg-a/members/c081", headers=headers).json() == outside.json()  # a cached "no"
    for path in [
        "/v1/segments/seg-b/stats",  # never asked: not cached
        "/v1/segments/seg-a/members/c043",  # c043's list is not cached
        "/v1/segments/seg-a/members",  # an export reads the index itself
    ]:
        started = time.perf_counter()
        response = client.get(path, headers=headers)
        assert response.status_code == 503, (path, response.text)
        assert response.json()["error"]["code"] == "unavailable" and int(response.headers["retry-after"]) >= 1
        assert time.perf_counter() - started < FAIL_FAST_SECONDS, path


def test_a_hanging_elasticsearch_answers_503_within_the_budget(api) -> None:
    client, headers, es_proxy, _ = api
    es_proxy.swallow()
    status, body, elapsed, response_headers = lookup(client, headers, "c088")
    assert status == 503, body
    assert "retry-after" in response_headers
    assert elapsed < FAIL_FAST_SECONDS
    assert elapsed >= BUDGET * 0.9  # it did wait for the budget: not some unrelated failure


def test_service_recovers_by_itself_when_elasticsearch_returns(api) -> None:
    client, headers, es_proxy, _ = api
    es_proxy.refuse()
    for customer_id in ["c090", "c091", "c092", "c093"]:
        assert lookup(client, headers, customer_id)[0] == 503
    assert metric("segmentation_circuit_breaker_state", circuit="elasticsearch") == 2

    es_proxy.forward()
    deadline = time.monotonic() + OPEN_SECONDS + 5
    while lookup(client, headers, "c094")[0] != 200:
        assert time.monotonic() < deadline, "no recovery after Elasticsearch came back"
        time.sleep(0.1)
    assert_correct(client, headers, "c095")
    assert metric("segmentation_circuit_breaker_state", circuit="elasticsearch") == 0


def test_cached_answers_survive_an_api_restart_while_elasticsearch_is_down(setup, proxies) -> None:
    proxied, headers = setup
    es_proxy, redis_proxy = proxies
    es_proxy.forward()
    redis_proxy.forward()
    with TestClient(create_app(proxied)) as before:
        assert_correct(before, headers, "c055")
    es_proxy.refuse()
    try:
        with TestClient(create_app(proxied)) as after:  # a new process would know no more than this
            assert_correct(after, headers, "c055")
            assert lookup(after, headers, "c056")[0] == 503
    finally:
        es_proxy.forward()


def test_a_new_process_joins_an_entry_written_after_its_catalog_was_first_cached(
    setup, proxies, settings: Settings
) -> None:
    """A running process holds its catalogs in memory; the copy in Redis must outlive every entry
    written later, or a process started while Elasticsearch is down cannot join them."""
    proxied, headers = setup
    es_proxy, redis_proxy = proxies
    es_proxy.forward()
    redis_proxy.forward()
    forget_cached_lookups(settings)  # nothing cached yet
    short = proxied.model_copy(update={"lookup_cache_ttl_seconds": 4})
    with TestClient(create_app(short)) as running:
        assert_correct(running, headers, "c061")  # t=0: the catalog and c061's entry, for 4 s
        time.sleep(2.5)
        assert_correct(running, headers, "c062")  # t=2.5: c062's entry, for 4 s; the catalog from memory
    time.sleep(2.0)  # t=4.5: a catalog cached once, at t=0, would be gone
    es_proxy.refuse()
    try:
        with TestClient(create_app(short)) as restarted:
            assert_correct(restarted, headers, "c062")
    finally:
        es_proxy.forward()


def test_the_generation_never_goes_backwards(setup, proxies, settings: Settings) -> None:
    """Redis restored from an older snapshot must not bring back answers cached long ago."""
    proxied, headers = setup
    es_proxy, redis_proxy = proxies
    es_proxy.forward()
    redis_proxy.forward()
    client = redis.Redis.from_url(settings.redis_url)
    key, record = generation_key(settings.index_prefix), served_indices_key(settings.index_prefix)
    es = Elasticsearch(settings.elasticsearch_url)
    served = next(iter(es.indices.get_alias(name=type_alias(settings.index_prefix, "new_customers"))))
    switched_at = int(es.indices.get_mapping(index=served)[served]["mappings"]["_meta"]["generation"])
    client.set(key, max(7, switched_at))
    with TestClient(create_app(proxied)) as api:
        assert_correct(api, headers, "c010")
    # Redis comes back from an old snapshot: the counter at 2, the type served (it says) by the
    # index before, since a generation older than the switch that Elasticsearch records, and an
    # answer cached back then.
    old = switched_at - 1
    client.set(key, 2)
    client.hset(record, "new_customers", served_index_value(old, f"{settings.index_prefix}-new_customers-2026-11-24-0ld"))
    client.set(lookup_key(settings.index_prefix, CacheKind.MEMBERSHIPS, "c010"), orjson.dumps({str(old): ["seg-b"]}))
    with TestClient(create_app(proxied)) as restarted:  # the floor comes from the file, not from memory
        assert_correct(restarted, headers, "c010")  # c010 is in seg-a only
    token, _, index = client.hget(record, "new_customers").decode().partition(" ")
    assert index == served and int(token) > max(7, switched_at)  # corrected, past the floor
    assert int(client.get(key)) == int(token)


def test_readiness_names_what_is_down(api) -> None:
    client, _, es_proxy, redis_proxy = api
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"elasticsearch": "ok", "redis": "ok", "postgresql": "ok"}
    es_proxy.refuse()
    redis_proxy.swallow()
    time.sleep(RESULT_SECONDS)  # the last round's result answers this long
    started = time.perf_counter()
    not_ready = client.get("/readyz")
    assert time.perf_counter() - started < 3
    assert not_ready.status_code == 503
    checks = not_ready.json()["checks"]
    assert checks["postgresql"] == "ok"
    assert checks["elasticsearch"] != "ok" and checks["redis"] != "ok"
    assert "elasticsearch" in not_ready.json()["error"]["message"]
    assert client.get("/healthz").status_code == 200
