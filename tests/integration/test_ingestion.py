"""Store ingestion on the real Elasticsearch and Redis: chunking, verification, retries, error
tolerance, a cluster lost mid-load, and a reader polling through the switch.

Calculations are hand-written results folders (`results_folder.write_results`), so no Spark runs
here; `test_publish_pipeline.py` goes through the real pipeline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest
from elasticsearch import Elasticsearch

from resources.lake.storage import MANIFEST_NAME, Lake
from resources.names import generation_key
from resources.settings import Settings
from segmentation_assets.index_and_alias import alias_key
from tests.integration.es_proxy import FaultyElasticsearch
from tests.integration.publishing import (
    TYPE,
    check_passed,
    expected_answer,
    failure_text,
    lock_holder,
    lookup,
    materialization,
    publish,
    served,
    type_index_names,
    writer,
)
from tests.integration.results_folder import write_results

pytestmark = pytest.mark.integration


def members(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{n:05d}" for n in range(count)]


@pytest.fixture
def namespace(make_namespace: Callable[[], Settings]) -> Settings:
    """Each test its own index prefix, lake and lock; small chunks and quick retries."""
    return make_namespace().model_copy(
        update={"ingest_chunk_size": 7, "ingest_retry_backoff_seconds": 0.05, "ingest_max_retries": 3}
    )


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def es(namespace: Settings) -> Elasticsearch:
    return Elasticsearch(namespace.elasticsearch_url)


@pytest.fixture
def proxy(namespace: Settings) -> Iterator[FaultyElasticsearch]:
    faulty = FaultyElasticsearch(namespace.elasticsearch_url)
    yield faulty
    faulty.close()


def test_large_and_zero_member_segments_are_chunked_verified_and_served(namespace, instance, es) -> None:
    segments = {"big": members("c", 50), "small": members("c", 3), "empty": []}
    manifest = write_results(namespace.lake_uri, TYPE, "2026-11-20", segments)

    result = publish(namespace, "2026-11-20", instance)

    assert result.success, failure_text(result)
    assert check_passed(result, "complete") and check_passed(result, "no_failed_chunks")
    built = materialization(result, "index")
    assert built["memberships"] == 53
    assert built["documents"] == 8 + 1 + 1  # 50 members in chunks of 7, and one document each for the others
    assert built["segments"] == 3 and built["bytes"] > 0 and built["failed_documents"] == 0
    [index] = served(namespace)
    assert index == built["index"] == materialization(result, "alias")["index"]
    counts = writer(namespace).segment_counts(index)
    assert {s: (c.members, c.documents) for s, c in counts.items()} == {"big": (50, 8), "small": (3, 1), "empty": (0, 1)}

    # The last member of the large segment sits in its last chunk; a zero-member segment holds nobody.
    customers = ["c00049", "c00001", "nobody"]
    assert lookup(es, namespace, customers) == expected_answer(manifest, segments, customers)

    # Loaded with refresh off and no replicas, restored after; ids kept out of _source and doc values.
    settings = es.indices.get_settings(index=index)[index]["settings"]["index"]
    assert "refresh_interval" not in settings and settings["auto_expand_replicas"] == "0-1"
    mapping = es.indices.get_mapping(index=index)[index]["mappings"]
    assert mapping["properties"]["customer_ids"] == {"type": "keyword", "doc_values": False, "store": True}
    assert mapping["_source"]["excludes"] == ["customer_ids"]
    assert mapping["_meta"]["verified"] is True and mapping["_meta"]["generation"] == materialization(result, "alias")["generation"]
    assert lock_holder(namespace) is None  # the run released the lock its alias step inherited


def test_an_index_that_differs_from_its_manifest_is_deleted_and_never_served(namespace, instance, es) -> None:
    before = {"a": members("c", 10)}
    old = write_results(namespace.lake_uri, TYPE, "2026-11-19", before)
    assert publish(namespace, "2026-11-19", instance).success
    [old_index] = served(namespace)
    manifest = write_results(namespace.lake_uri, TYPE, "2026-11-20", {"a": members("c", 12), "b": members("d", 3)})
    manifest["segments"][0]["member_count"] += 1  # the manifest promises a member the files do not hold
    lake = Lake(namespace.lake_uri)
    lake.write_json(f"{lake.results_dir(TYPE, '2026-11-20')}/{MANIFEST_NAME}", manifest)

    result = publish(namespace, "2026-11-20", instance)

    assert not result.success
    assert not check_passed(result, "complete")
    [check] = [e for e in result.get_asset_check_evaluations() if e.check_name == "complete"]
    assert check.metadata["mismatches"].value == {"a": {"expected_members": 13, "index_members": 12, "index_documents": 2, "chunks": 2}}
    assert materialization(result, "index")["deleted"] is True
    assert not result.asset_materializations_for_node(alias_key(TYPE).to_python_identifier())
    assert served(namespace) == [old_index] and type_index_names(namespace) == {old_index}
    assert lookup(es, namespace, ["c00001", "d00001"]) == expected_answer(old, before, ["c00001", "d00001"])


def test_rejected_requests_and_items_are_retried_with_backoff(namespace, instance, proxy) -> None:
    segments = {"a": members("c", 30), "b": members("d", 12)}
    write_results(namespace.lake_uri, TYPE, "2026-11-20", segments)
    documents = 5 + 2
    proxy.bulk_statuses = [503, 429]  # the whole first and second attempts are turned away
    proxy.reject_items = 3  # then three items of the third attempt are

    # One worker, one request: every retry is counted exactly.
    result = publish(namespace.model_copy(update={"elasticsearch_url": proxy.url, "ingest_bulk_workers": 1}), "2026-11-20", instance)

    assert result.success, failure_text(result)
    built = materialization(result, "index")
    assert built["retried_documents"] == documents + documents + 3
    assert built["bulk_requests"] == 4 and built["failed_documents"] == 0
    assert built["memberships"] == 42 and check_passed(result, "complete")


def test_a_chunk_failing_after_retries_fails_the_ingestion_by_default(namespace, instance, es, proxy) -> None:
    before = {"a": members("c", 10), "b": members("d", 10)}
    manifest = write_results(namespace.lake_uri, TYPE, "2026-11-19", before)
    assert publish(namespace, "2026-11-19", instance).success
    served_before = served(namespace)
    write_results(namespace.lake_uri, TYPE, "2026-11-20", {"a": members("c", 20), "b": members("e", 20)})
    proxy.reject_item = lambda doc_id: doc_id == "b#1"  # rejected on every attempt

    result = publish(namespace.model_copy(update={"elasticsearch_url": proxy.url}), "2026-11-20", instance)

    assert not result.success
    message = failure_text(result)
    assert "1 of 6 chunk documents" in message and "above the error tolerance of 0.00%" in message
    assert "segments affected: b" in message and "served alias is unchanged" in message
    assert served(namespace) == served_before
    assert type_index_names(namespace) == set(served_before)  # the failed index is gone
    customers = ["c00001", "d00001", "e00001"]
    assert lookup(es, namespace, customers) == expected_answer(manifest, before, customers)


def test_within_the_tolerance_failed_segments_keep_their_previous_calculation(namespace, instance, es, proxy) -> None:
    before = {"a": members("c", 10), "b": members("d", 10)}
    old = write_results(namespace.lake_uri, TYPE, "2026-11-19", before)
    assert publish(namespace, "2026-11-19", instance).success
    after = {"a": members("c", 20), "b": members("e", 20), "new": members("f", 8)}
    new = write_results(namespace.lake_uri, TYPE, "2026-11-20", after)
    proxy.reject_item = lambda doc_id: doc_id in ("b#2", "new#0")  # old `b` has chunks #0 and #1 only

    tolerant = namespace.model_copy(update={"elasticsearch_url": proxy.url, "ingest_error_tolerance": 0.5})
    result = publish(tolerant, "2026-11-20", instance)

    assert result.success, failure_text(result)
    assert check_passed(result, "complete")
    assert not check_passed(result, "no_failed_chunks")
    [warning] = [e for e in result.get_asset_check_evaluations() if e.check_name == "no_failed_chunks"]
    assert warning.severity == dg.AssetCheckSeverity.WARN
    failed = warning.metadata["failed_segments"].value
    assert set(failed) == {"b", "new"}
    assert failed["b"].startswith("previous calculation from ") and failed["new"].startswith("nothing")
    customers = ["c00015", "d00001", "e00001", "f00001"]
    # `a` is the new calculation; `b` still answers from the old one; `new` is not served half-loaded.
    expected = expected_answer(new, {"a": after["a"]}, customers) | expected_answer(old, {"b": before["b"]}, customers)
    assert lookup(es, namespace, customers) == expected


def _truncate_part_of(namespace: Settings, partition_key: str, number: int) -> str:
    """Cuts one results part in half, as a lost write would: it cannot be read any more."""
    part = Path(Lake(namespace.lake_uri).results_dir(TYPE, partition_key)) / f"part-{number:05d}.parquet"
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    return part.name


def test_within_the_tolerance_an_unreadable_part_keeps_its_segments_previous_calculation(namespace, instance, es) -> None:
    before = {"a": members("c", 10), "b": members("d", 10)}
    old = write_results(namespace.lake_uri, TYPE, "2026-11-19", before)
    assert publish(namespace, "2026-11-19", instance).success
    after = {"a": members("c", 20), "b": members("e", 20), "new": members("f", 8)}
    new = write_results(namespace.lake_uri, TYPE, "2026-11-20", after)
    damaged = _truncate_part_of(namespace, "2026-11-20", 1)  # `b`'s part: 3 of the 8 chunk documents

    result = publish(namespace.model_copy(update={"ingest_error_tolerance": 0.5}), "2026-11-20", instance)

    assert result.success, failure_text(result)
    assert check_passed(result, "complete")
    [warning] = [e for e in result.get_asset_check_evaluations() if e.check_name == "no_failed_chunks"]
    assert not warning.passed
    assert set(warning.metadata["failed_segments"].value) == {"b"}
    assert [Path(p).name for p in warning.metadata["unreadable_parts"].value] == [damaged]
    assert warning.metadata["failed_documents"].value == 3
    customers = ["c00015", "d00001", "e00001", "f00001"]
    # `a` and `new` are the new calculation; `b` answers from the old one, never from half a part.
    expected = expected_answer(new, {"a": after["a"], "new": after["new"]}, customers) | expected_answer(
        old, {"b": before["b"]}, customers
    )
    assert lookup(es, namespace, customers) == expected


def test_beyond_the_tolerance_an_unreadable_part_fails_and_names_the_file(namespace, instance, es) -> None:
    before = {"a": members("c", 10), "b": members("d", 10)}
    old = write_results(namespace.lake_uri, TYPE, "2026-11-19", before)
    assert publish(namespace, "2026-11-19", instance).success
    served_before = served(namespace)
    write_results(namespace.lake_uri, TYPE, "2026-11-20", {"a": members("c", 20), "b": members("e", 20)})
    damaged = _truncate_part_of(namespace, "2026-11-20", 1)  # 3 of 6 chunk documents

    result = publish(namespace.model_copy(update={"ingest_error_tolerance": 0.2}), "2026-11-20", instance)

    assert not result.success
    message = failure_text(result)
    assert "3 of 6 chunk documents" in message and "above the error tolerance of 20.00%" in message
    assert damaged in message and "served alias is unchanged" in message
    assert served(namespace) == served_before
    customers = ["c00015", "d00001", "e00001"]
    assert lookup(es, namespace, customers) == expected_answer(old, before, customers)


def test_elasticsearch_lost_mid_load_fails_clearly_keeps_the_old_alias_and_a_rerun_succeeds(
    namespace, instance, es, proxy
) -> None:
    before = {"a": members("c", 40)}
    old = write_results(namespace.lake_uri, TYPE, "2026-11-19", before)
    assert publish(namespace, "2026-11-19", instance).success
    [old_index] = served(namespace)
    after = {"a": members("c", 20), "b": members("d", 60)}
    new = write_results(namespace.lake_uri, TYPE, "2026-11-20", after)
    proxy.cut_at_bulk_request = 3  # the cluster goes away in the middle of the load

    small_requests = {"elasticsearch_url": proxy.url, "ingest_bulk_bytes": 1500, "ingest_bulk_workers": 1}
    result = publish(namespace.model_copy(update=small_requests), "2026-11-20", instance)

    assert not result.success
    message = failure_text(result)
    assert "Elasticsearch became unreachable while loading" in message
    assert f"served alias is unchanged ({old_index})" in message
    customers = ["c00001", "c00030", "d00001"]
    assert served(namespace) == [old_index]
    assert lookup(es, namespace, customers) == expected_answer(old, before, customers)
    assert lock_holder(namespace) is None
    leftovers = type_index_names(namespace) - {old_index}  # the partial index could not be deleted

    rerun = publish(namespace, "2026-11-20", instance)

    assert rerun.success, failure_text(rerun)
    assert lookup(es, namespace, customers) == expected_answer(new, after, customers)
    assert leftovers <= set(materialization(rerun, "alias")["deleted_indices"])
    assert type_index_names(namespace) == {old_index, served(namespace)[0]}


def test_a_reader_polling_through_an_ingestion_never_sees_a_mix(namespace, instance, es, proxy) -> None:
    customers = [f"c{n:05d}" for n in range(0, 400, 37)]
    before = {f"s{n}": members("c", 100 * (n + 1)) for n in range(4)}
    old = write_results(namespace.lake_uri, TYPE, "2026-11-19", before)
    assert publish(namespace, "2026-11-19", instance).success
    after = {f"s{n}": members("c", 400 - 90 * n) for n in range(2, 7)}
    new = write_results(namespace.lake_uri, TYPE, "2026-11-20", after)
    old_answer, new_answer = expected_answer(old, before, customers), expected_answer(new, after, customers)
    assert old_answer != new_answer and lookup(es, namespace, customers) == old_answer

    seen: list[frozenset] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            seen.append(lookup(es, namespace, customers))

    poller = threading.Thread(target=poll)
    poller.start()
    proxy.delay_bulk_seconds = 0.05  # a slow load: many polls land while the new index fills
    slow = {"elasticsearch_url": proxy.url, "ingest_bulk_bytes": 2000, "ingest_chunk_size": 5}
    result = publish(namespace.model_copy(update=slow), "2026-11-20", instance)
    time.sleep(0.2)
    done.set()
    poller.join()

    assert result.success, failure_text(result)
    assert proxy.bulk_requests > 10
    assert {answer for answer in seen} <= {old_answer, new_answer}
    switch = seen.index(new_answer)
    assert switch > 10 and set(seen[:switch]) == {old_answer} and set(seen[switch:]) == {new_answer}


def test_the_generation_never_goes_back_when_redis_loses_it(namespace, instance) -> None:
    import redis

    write_results(namespace.lake_uri, TYPE, "2026-11-19", {"a": members("c", 3)})
    first = materialization(publish(namespace, "2026-11-19", instance), "alias")["generation"]
    redis.Redis.from_url(namespace.redis_url).delete(generation_key(namespace.index_prefix))  # Redis lost its data
    write_results(namespace.lake_uri, TYPE, "2026-11-20", {"a": members("c", 4)})

    second = materialization(publish(namespace, "2026-11-20", instance), "alias")["generation"]

    assert second == first + 1
    assert int(redis.Redis.from_url(namespace.redis_url).get(generation_key(namespace.index_prefix))) == second
    [index] = served(namespace)  # the generation is kept in the served index's _meta as well
    assert writer(namespace).segment_index(index).meta["generation"] == second
