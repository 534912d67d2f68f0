"""The lookup cache is valid per segment type (SPEC 8: an alias switch costs no failed request and
keeps the SLO): a switch of one type leaves what is cached of the others answered, misses of the
same moment share searches, and Redis's record of what is served is mended from Elasticsearch.

Expected answers are computed here from the memberships the test wrote, with none of the serving code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from elasticsearch import Elasticsearch
from fastapi.testclient import TestClient

from api.lifespan import open_state
from api.main import create_app
from resources.config_store.api_keys import ApiKeyRepository
from resources.config_store.database import session_factory
from resources.names import CacheKind, generation_key, lookup_key, served_indices_key, untagged_served_keys
from resources.settings import Settings
from tests.published_segments import publish
from tests.redis_servers import cache_redis, coordination_redis, get_many, unlink_matching

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings(settings_on_each_redis: Settings) -> Settings:
    """This module runs on a plain Redis, then on a Redis Cluster."""
    return settings_on_each_redis

CUSTOMERS = [f"c{i:03d}" for i in range(60)]
Segments = dict[str, tuple[dict[str, Any], list[str]]]
NEW_BEFORE: Segments = {"seg-n1": ({"name": "n1"}, CUSTOMERS[0:30]), "seg-n2": ({"name": "n2"}, CUSTOMERS[20:50])}
NEW_AFTER: Segments = {"seg-n1": ({"name": "n1"}, CUSTOMERS[10:40]), "seg-n3": ({"name": "n3"}, CUSTOMERS[0:5])}
FREQUENT: Segments = {"seg-f1": ({"name": "f1"}, CUSTOMERS[0:60:2]), "seg-f2": ({"name": "f2"}, CUSTOMERS[45:55])}


def expected(customer_id: str, *published: Segments) -> list[str]:
    return sorted(s for segments in published for s, (_, members) in segments.items() if customer_id in members)


@pytest.fixture(scope="module")
def setup(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict[str, str], dict[str, str]]:
    settings = settings.model_copy(
        update={
            "lookup_generation_refresh_seconds": 0.0,  # a switch shows at once
            "lookup_near_cache_entries": 0,  # Redis's entries are under test
            "api_search_budget_seconds": 5.0,
            "state_dir": Path(tmp_path_factory.mktemp("state")),
        }
    )
    indices = {
        "new_customers": publish(settings, "new_customers", NEW_BEFORE, chunk_size=7),
        "frequent_buyers": publish(settings, "frequent_buyers", FREQUENT, chunk_size=7),
    }
    key = ApiKeyRepository(session_factory(settings.database_url)).create("per-type-reader", "read")
    return settings, {"Authorization": f"Bearer {key}"}, indices


@pytest.fixture
def fresh(setup) -> Iterator[tuple[Settings, dict[str, str], dict[str, str]]]:
    settings = setup[0]
    unlink_matching(cache_redis(settings), f"{settings.index_prefix}:lookup:*")
    yield setup


def segment_ids(client: TestClient, headers: dict[str, str], customer_id: str) -> list[str]:
    response = client.get(f"/v1/customers/{customer_id}/segments", headers=headers)
    assert response.status_code == 200, response.text
    return [s["segment_id"] for s in response.json()["segments"]]


def cached_entries(settings: Settings, customer_ids: list[str]) -> dict[str, dict[str, list[str]]]:
    """Waits until Redis holds every customer's entry (written behind the answers); answers them."""
    client = cache_redis(settings)
    keys = [lookup_key(settings.index_prefix, CacheKind.MEMBERSHIPS, c) for c in customer_ids]
    deadline = time.monotonic() + 5
    while None in (values := get_many(client, keys)):
        assert time.monotonic() < deadline, "entries never written"
        time.sleep(0.01)
    return {c: orjson.loads(v) for c, v in zip(customer_ids, values)}


def tokens(settings: Settings) -> dict[str, str]:
    recorded = coordination_redis(settings).hgetall(served_indices_key(settings.index_prefix))
    return {t.decode(): v.decode().split(" ")[0] for t, v in recorded.items()}


def test_a_switch_of_one_type_leaves_the_others_answered_from_the_cache(fresh) -> None:
    settings, headers, indices = fresh
    es = Elasticsearch(settings.elasticsearch_url)
    asked = CUSTOMERS[:56]
    with TestClient(create_app(settings)) as client:
        for customer in asked:
            assert segment_ids(client, headers, customer) == expected(customer, NEW_BEFORE, FREQUENT)
        before = cached_entries(settings, asked)
        frequent_token = tokens(settings)["frequent_buyers"]

        publish(settings, "new_customers", NEW_AFTER, chunk_size=7)
        deadline = time.monotonic() + 5  # each process adopts a switch once it has the new catalog
        while segment_ids(client, headers, "c000") != expected("c000", NEW_AFTER, FREQUENT):
            assert time.monotonic() < deadline, "the switch never showed"
            time.sleep(0.01)
        # frequent_buyers can no longer be read at all: only its cached memberships can answer it.
        es.indices.close(index=indices["frequent_buyers"])
        try:
            for customer in asked:
                assert segment_ids(client, headers, customer) == expected(customer, NEW_AFTER, FREQUENT), customer
        finally:
            es.indices.open(index=indices["frequent_buyers"], wait_for_active_shards="all")

    after = cached_entries(settings, asked)
    new_token = tokens(settings)["new_customers"]
    assert tokens(settings)["frequent_buyers"] == frequent_token
    for customer in asked:
        assert after[customer][frequent_token] == before[customer][frequent_token]
        assert after[customer][new_token] == expected(customer, NEW_AFTER)


def test_misses_that_arrive_while_a_search_runs_share_the_next_one(fresh) -> None:
    settings = fresh[0]

    async def ask_at_once() -> tuple[dict[str, list[str]], list[int]]:
        state, es_client, clients = open_state(settings)
        reader = state.lookups.reader
        try:
            await state.lookups.customer_segments("somebody-else")  # what is served, and the catalogs, read
            search, aggregate, searching, searched = reader._search, reader._aggregate_one, asyncio.Event(), []

            async def held_up(target: str, customer_ids: list[str], *rest: Any) -> Any:
                searched.append(len(customer_ids))
                await searching.wait()  # Elasticsearch slow to answer: the other misses arrive meanwhile
                return await search(target, customer_ids, *rest)

            async def held_up_alone(target: str, customer_id: str, *rest: Any) -> Any:  # a lone miss's search
                searched.append(1)
                await searching.wait()
                return await aggregate(target, customer_id, *rest)

            reader._search, reader._aggregate_one = held_up, held_up_alone
            asked = asyncio.gather(*(state.lookups.customer_segments(c) for c in CUSTOMERS))
            await asyncio.sleep(0.5)
            searching.set()
            answers = await asked
            return {c: [s["segment_id"] for s in a] for c, a in zip(CUSTOMERS, answers)}, searched
        finally:
            await es_client.close()
            for client in clients:
                await client.aclose()

    answers, searched = asyncio.run(ask_at_once())
    assert answers == {c: expected(c, *current_published(settings)) for c in CUSTOMERS}
    # The first at once, alone (or with those already there); then all that came meanwhile, together.
    assert len(searched) <= 2 and sum(searched) == len(CUSTOMERS), searched


def current_published(settings: Settings) -> tuple[Segments, Segments]:
    """What new_customers serves now: this module's first test may have switched it."""
    alias = Elasticsearch(settings.elasticsearch_url).indices.get_alias(name=f"{settings.index_prefix}-new_customers")
    segment_ids = {
        hit["_source"]["segment_id"]
        for hit in Elasticsearch(settings.elasticsearch_url).search(index=next(iter(alias)), size=100, source=["segment_id"])["hits"]["hits"]
    }
    return (NEW_AFTER if "seg-n3" in segment_ids else NEW_BEFORE), FREQUENT


def test_a_process_mends_what_redis_lost_of_the_served_indices_before_its_first_lookup(fresh) -> None:
    """An upgrade from a release that kept no record, or a coordination Redis that lost it."""
    settings, headers, _ = fresh
    coordination = coordination_redis(settings)
    coordination.delete(served_indices_key(settings.index_prefix))
    with TestClient(create_app(settings)) as client:
        assert set(tokens(settings)) == {"new_customers", "frequent_buyers"}
        published = current_published(settings)
        for customer in CUSTOMERS[:10]:
            assert segment_ids(client, headers, customer) == expected(customer, *published)
        entries = cached_entries(settings, CUSTOMERS[:10])
    assert all(set(entry) == set(tokens(settings).values()) for entry in entries.values())


def test_no_lookup_waits_for_the_catalog_of_an_index_just_switched_in(setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process keeps answering from the view before a switch until it holds the new catalog.
    Runs last in this module: it publishes a calculation that the tests above do not expect."""
    settings = setup[0]

    async def scenario() -> tuple[list[str], list[str], list[str]]:
        state, es_client, clients = open_state(settings)
        reader = state.lookups.reader
        try:
            for customer in ("c001", "c002"):  # the current view and its catalogs, loaded; both cached
                await state.lookups.customer_segments(customer)
            await state.lookups.cache.drain()
            published = current_published(settings)
            index = publish(settings, "new_customers", published[0] | {"seg-n9": ({"name": "n9"}, ["c001", "c002"])}, chunk_size=7)
            release = asyncio.Event()
            load_catalog = reader._load_catalog

            async def held_back(name: str) -> dict[str, Any]:
                if name == index:
                    await release.wait()  # the new index's catalog takes as long as this test says
                return await load_catalog(name)

            monkeypatch.setattr(reader, "_load_catalog", held_back)
            while_loading = [s["segment_id"] for s in await asyncio.wait_for(state.lookups.customer_segments("c002"), 5)]
            release.set()
            deadline = time.monotonic() + 5
            while (after := [s["segment_id"] for s in await state.lookups.customer_segments("c001")]) == expected(
                "c001", *published
            ):
                assert time.monotonic() < deadline, "the switch never showed"
                await asyncio.sleep(0.01)
            return while_loading, after, expected("c002", *published)
        finally:
            await es_client.close()
            for client in clients:
                await client.aclose()

    while_loading, after, before_for_c002 = asyncio.run(scenario())
    assert while_loading == before_for_c002  # answered at once, from the calculation before the switch (no seg-n9)
    assert "seg-n9" in after


def test_the_record_of_what_is_served_is_corrected_unless_the_publisher_wrote_it_since(setup, tmp_path: Path) -> None:
    settings = setup[0].model_copy(update={"index_prefix": f"{setup[0].index_prefix}-record"})
    coordination = coordination_redis(settings)
    record, counter = served_indices_key(settings.index_prefix), generation_key(settings.index_prefix)

    async def reconcile(recorded_before: dict[str, str], served: dict[str, str]) -> int:
        state, es_client, clients = open_state(settings.model_copy(update={"state_dir": tmp_path}))
        try:
            return await state.lookups.cache.reconcile_served(recorded_before, served)
        finally:
            await es_client.close()
            for client in clients:
                await client.aclose()

    try:
        coordination.hset(record, mapping={"a": "5 idx-a1", "b": "6 idx-b1", "c": "7 idx-c1"})
        coordination.set(counter, 7)
        before = {t.decode(): v.decode() for t, v in coordination.hgetall(record).items()}
        coordination.hset(record, "c", "8 idx-c2")  # the publisher, between the reading of Redis and of Elasticsearch
        changed = asyncio.run(reconcile(before, {"a": "idx-a2", "b": "idx-b1", "c": "idx-c1", "d": "idx-d1"}))
        after = {t.decode(): v.decode() for t, v in coordination.hgetall(record).items()}
    finally:
        coordination.delete(record, counter)
    assert changed == 2
    assert after["a"].endswith(" idx-a2") and int(after["a"].split()[0]) > 7  # another index: a new generation
    assert after["b"] == "6 idx-b1"  # as served: untouched
    assert after["c"] == "8 idx-c2"  # written since the reading: the publisher's, newer, kept
    assert after["d"].endswith(" idx-d1") and after["d"].split()[0] != after["a"].split()[0]  # missing: recorded


def test_an_upgrade_carries_the_record_over_from_the_names_before_hash_tags(setup, tmp_path: Path) -> None:
    """A plain Redis kept the counter and the record under names without a hash tag: the first API
    process of the new release carries them over, so every entry cached before stays valid. On a
    cluster those names never worked: nothing to carry."""
    settings = setup[0].model_copy(update={"index_prefix": f"{setup[0].index_prefix}-upgrade", "state_dir": tmp_path})
    coordination = coordination_redis(settings)
    old_counter, old_record = untagged_served_keys(settings.index_prefix)
    counter, record = generation_key(settings.index_prefix), served_indices_key(settings.index_prefix)
    recorded = {b"new_customers": b"40 idx-n1", b"frequent_buyers": b"41 idx-f1"}

    async def carry_over() -> list[int]:
        state, es_client, clients = open_state(settings)
        try:
            return [await state.lookups.cache.carry_over_untagged_record() for _ in range(2)]
        finally:
            await es_client.close()
            for client in clients:
                await client.aclose()

    try:
        coordination.set(old_counter, 41)
        coordination.hset(old_record, mapping=recorded)
        carried = asyncio.run(carry_over())
        if settings.redis_cluster:
            assert carried == [0, 0] and coordination.exists(counter) == 0
        else:
            assert carried == [2, 0]  # the first time only
            assert coordination.get(counter) == b"41" and coordination.hgetall(record) == recorded
    finally:
        for key in (old_counter, old_record, counter, record):  # one by one: on a cluster, in two slots
            coordination.delete(key)
