"""Lookups whose hits fill more than one page, on the real Elasticsearch: a batch is asked again
in parts, one customer page by page. Every customer still gets exactly its segments, and all the
parts read one calculation, even when the alias switches between two of them. A page is made
small here (`MAX_HITS`) so that small calculations need parts."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from elasticsearch import AsyncElasticsearch, Elasticsearch

from resources.serving import reader as segment_reader
from resources.serving.reader import SegmentReader
from resources.serving.search_guard import SearchGuard, breaker_factory
from resources.settings import Settings
from tests.published_segments import publish

pytestmark = pytest.mark.integration

PAGE = 4  # hits per page: a customer of these calculations is in at most 3 segments
SEGMENTS = [f"seg-{n:02d}" for n in range(12)]
CUSTOMERS = [f"c{n:03d}" for n in range(30)]


def calculation(seed: int) -> dict[str, tuple[dict[str, Any], list[str]]]:
    rng = random.Random(seed)
    members: dict[str, list[str]] = {s: [] for s in SEGMENTS}
    for customer in CUSTOMERS:
        for segment_id in rng.sample(SEGMENTS, rng.randint(0, PAGE - 1)):
            members[segment_id].append(customer)
    return {s: ({}, m) for s, m in members.items()}


def expected(published: dict[str, tuple[dict[str, Any], list[str]]], customer: str) -> list[str]:
    return sorted(s for s, (_, members) in published.items() if customer in members)


def read(settings: Settings, customer_ids: list[str], before_search: Callable[[int], None] = lambda _: None) -> tuple[dict[str, dict[str, list[str]]], list[str]]:
    """(what the reader answers for these customers, each search's target: the alias or a point in time)."""

    async def scenario() -> tuple[dict[str, dict[str, list[str]]], list[str]]:
        es = AsyncElasticsearch(settings.elasticsearch_url)
        targets: list[str] = []
        search = es.search

        async def counted_search(**kwargs: Any) -> Any:
            targets.append("pit" if "pit" in kwargs else kwargs["index"])
            before_search(len(targets))
            return await search(**kwargs)

        es.search = counted_search  # type: ignore[method-assign]
        guard = SearchGuard(breaker_factory(failures=5, open_seconds=30), budget_seconds=10, open_seconds=30)
        reader = SegmentReader(es, settings.index_prefix, guard, catalog_budget_seconds=10)
        try:
            return await reader.memberships_of(customer_ids), targets
        finally:
            await es.close()

    return asyncio.run(scenario())


def segments_of(held: dict[str, list[str]]) -> list[str]:
    return sorted(s for ids in held.values() for s in ids)


def test_a_batch_in_parts_answers_every_customer_exactly(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segment_reader, "MAX_HITS", PAGE)
    published = calculation(seed=1)
    publish(settings, "new_customers", published)
    held, targets = read(settings, CUSTOMERS)
    assert {c: segments_of(h) for c, h in held.items()} == {c: expected(published, c) for c in CUSTOMERS}
    assert targets[0] != "pit" and targets.count("pit") == len(targets) - 1 > 2  # asked again in parts


def test_the_parts_of_a_batch_read_one_calculation_across_a_switch(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segment_reader, "MAX_HITS", PAGE)
    first = {"seg-a": ({}, ["x1"]), "seg-b": ({}, ["x1"]), "seg-c": ({}, ["x1"]), "seg-d": ({}, ["x2"]), "seg-e": ({}, ["x2"])}
    second = {"seg-a": ({}, ["x2"]), "seg-b": ({}, []), "seg-c": ({}, []), "seg-d": ({}, []), "seg-e": ({}, [])}
    first_index = publish(settings, "frequent_buyers", first, partition_key="2026-11-24")

    def switch_before_the_last_part(search_number: int) -> None:
        # 1: both customers, 5 hits, more than a page; 2: x1; 3: x2, after a new calculation is served
        if search_number == 3:
            publish(settings, "frequent_buyers", second, partition_key="2026-11-25")

    held, targets = read(settings, ["x1", "x2"], switch_before_the_last_part)
    assert len(targets) == 3
    served = {index for h in held.values() for index in h}
    assert served == {first_index}, "one answer mixed two calculations"
    assert {c: segments_of(h) for c, h in held.items()} == {"x1": ["seg-a", "seg-b", "seg-c"], "x2": ["seg-d", "seg-e"]}
    # and the next batch reads the new calculation
    held, _ = read(settings, ["x1", "x2"])
    assert {c: segments_of(h) for c, h in held.items()} == {"x1": [], "x2": ["seg-a"]}


def test_a_customer_in_more_segments_than_a_page_gets_them_all(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segment_reader, "MAX_HITS", PAGE)
    # y1 in 10 segments (pages of 4, 4, 2), y2 in exactly a page of them (4, then an empty page)
    published = {f"many-{n:02d}": ({}, ["y1", "y2"] if n % 3 == 0 else ["y1"]) for n in range(10)}
    index = publish(settings, "high_spenders", published)
    held, targets = read(settings, ["y1", "y2", "y3"])
    assert {c: segments_of(h) for c, h in held.items()} == {c: expected(published, c) for c in ["y1", "y2", "y3"]}
    assert len(expected(published, "y1")) == 10 and len(expected(published, "y2")) == PAGE
    assert {i for h in held.values() for i in h} == {index}
    assert targets.count("pit") >= 3 + 2  # y1's three pages and y2's two, after the parts


def test_each_search_in_a_point_in_time_uses_the_id_of_the_last_answer(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """A search in a point in time may answer with a new id for it (when shards move between nodes),
    and the next search, and the close, must use that one. One node never changes it: here every
    answer renames the point in time, and a search or close under a name already replaced fails."""
    monkeypatch.setattr(segment_reader, "MAX_HITS", PAGE)
    published = {f"many-{n:02d}": ({}, ["z1", "z2"] if n % 2 else ["z1"]) for n in range(10)}
    publish(settings, "lapsed_customers", published)

    async def scenario() -> tuple[dict[str, dict[str, list[str]]], list[str], list[str]]:
        es = AsyncElasticsearch(settings.elasticsearch_url)
        real_ids: dict[str, str] = {}  # the name handed out last -> the real id
        used: list[str] = []
        closed: list[str] = []
        search, open_, close = es.search, es.open_point_in_time, es.close_point_in_time

        def real(name: str) -> str:
            if name not in real_ids:
                raise AssertionError(f"the point in time {name} was renamed since")
            return real_ids.pop(name)

        async def renaming_open(**kwargs: Any) -> Any:
            response = await open_(**kwargs)
            real_ids["renamed-0"] = response.body["id"]
            response.body["id"] = "renamed-0"
            return response

        async def renaming_search(**kwargs: Any) -> Any:
            if "pit" not in kwargs:
                return await search(**kwargs)
            name = kwargs["pit"]["id"]
            used.append(name)
            kwargs["pit"] = {**kwargs["pit"], "id": real(name)}
            response = await search(**kwargs)
            renamed = f"renamed-{len(used)}"
            real_ids[renamed] = response.body.get("pit_id", kwargs["pit"]["id"])
            response.body["pit_id"] = renamed
            return response

        async def renaming_close(*, id: str, **kwargs: Any) -> Any:
            closed.append(id)
            return await close(id=real(id), **kwargs)

        es.open_point_in_time = renaming_open  # type: ignore[method-assign]
        es.search = renaming_search  # type: ignore[method-assign]
        es.close_point_in_time = renaming_close  # type: ignore[method-assign]
        guard = SearchGuard(breaker_factory(failures=5, open_seconds=30), budget_seconds=10, open_seconds=30)
        reader = SegmentReader(es, settings.index_prefix, guard, catalog_budget_seconds=10)
        try:
            return await reader.memberships_of(["z1", "z2"]), used, closed
        finally:
            await es.close()

    held, used, closed = asyncio.run(scenario())
    assert {c: segments_of(h) for c, h in held.items()} == {c: expected(published, c) for c in ["z1", "z2"]}
    assert len(used) >= 4  # z1's three pages, z2's two
    assert used == [f"renamed-{n}" for n in range(len(used))], "a search used a point in time's old id"
    assert closed == [f"renamed-{len(used)}"]


def test_a_lone_customer_is_aggregated_and_paged_only_beyond_a_bucket(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """One customer's segments come as the keys of one aggregation; when an index holds it in more
    segments than a bucket lists, its hits are paged instead, and it still gets every segment."""
    monkeypatch.setattr(segment_reader, "MAX_HITS", PAGE)
    monkeypatch.setattr(segment_reader, "SEGMENTS_PER_BUCKET", PAGE)
    published = {f"lone-{n:02d}": ({}, ["w1", "w2"] if n < PAGE else ["w1"]) for n in range(9)}
    index = publish(settings, "new_customers", published, partition_key="2026-11-26")

    held, targets = read(settings, ["w2"])  # in exactly a bucket's worth
    assert segments_of(held["w2"]) == expected(published, "w2") and len(expected(published, "w2")) == PAGE
    assert set(held["w2"]) == {index} and "pit" not in targets and len(targets) == 1

    held, targets = read(settings, ["w1"])  # in more than a bucket lists
    assert segments_of(held["w1"]) == expected(published, "w1") and len(expected(published, "w1")) == 9
    assert set(held["w1"]) == {index} and targets.count("pit") >= 2  # after the aggregation, pages

    held, targets = read(settings, ["nobody"])
    assert held == {"nobody": {}} and len(targets) == 1


def test_a_catalog_is_read_in_pages_and_taken_back_whole_from_its_serialized_form(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every segment's answer, over several catalog pages; and the form the cache keeps (a line per
    segment) gives another process the same catalog, tabs, newlines and quotes in names included."""
    monkeypatch.setattr(segment_reader, "CATALOG_PAGE", 3)
    names = {f"cat-{n:02d}": f'name {n}\twith "quotes"\nand a line' if n % 2 else f"name {n}" for n in range(8)}
    published = {s: ({"name": name, "labels": {"team": f"t{n}"}, "city": "Madrid"}, ["v1"]) for n, (s, name) in enumerate(names.items())}
    index = publish(settings, "frequent_buyers", published, partition_key="2026-11-27")

    async def scenario() -> tuple[dict[str, bytes], dict[str, bytes]]:
        es = AsyncElasticsearch(settings.elasticsearch_url)
        guard = SearchGuard(breaker_factory(failures=5, open_seconds=30), budget_seconds=10, open_seconds=30)
        try:
            catalog = await SegmentReader(es, settings.index_prefix, guard, catalog_budget_seconds=10).catalog(index)
            serialized = SegmentReader.serialized_catalog(catalog)
            adopted = SegmentReader(es, settings.index_prefix, guard, catalog_budget_seconds=10).adopt_catalog(index, serialized)
            return catalog, adopted
        finally:
            await es.close()

    catalog, adopted = asyncio.run(scenario())
    assert adopted == catalog
    answers = {s: orjson.loads(answer) for s, answer in catalog.items()}
    assert {s: (a["name"], a["labels"], a["city"], a["segment_type"]) for s, a in answers.items()} == {
        s: (name, {"team": f"t{n}"}, "Madrid", "frequent_buyers") for n, (s, name) in enumerate(names.items())
    }


def test_a_lone_customer_past_the_clusters_bucket_limit_is_paged(settings: Settings) -> None:
    """More buckets than `search.max_buckets` allows: Elasticsearch refuses the aggregation, and the
    customer's hits are read instead."""
    published = {f"bucket-{n:02d}": ({}, ["u1"]) for n in range(12)}
    publish(settings, "high_spenders", published, partition_key="2026-11-28")
    es = Elasticsearch(settings.elasticsearch_url)
    es.cluster.put_settings(persistent={"search.max_buckets": 5})
    try:
        held, targets = read(settings, ["u1"])
    finally:
        es.cluster.put_settings(persistent={"search.max_buckets": None})
        es.close()
    assert segments_of(held["u1"]) == expected(published, "u1") and len(expected(published, "u1")) == 12
    assert len(targets) == 2  # the aggregation refused, then one page of hits
