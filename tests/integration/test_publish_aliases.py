"""The alias side of publishing on the real Elasticsearch and Redis: a backfill never un-publishes a
newer calculation, retention keeps exactly the last K, rollback and roll-forward (command line and
Dagster job), and an alias step run on its own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import pytest
import redis
from elastic_transport import ConnectionError as TransportConnectionError
from elasticsearch import Elasticsearch
from typer.testing import CliRunner

from cli.main import app
from definitions import build_definitions, build_resources
from resources.names import generation_key, ingestion_lock_key
from resources.publishing.aliases import (
    GENERATION_ATTEMPTS,
    PublicationRefused,
    publish_index,
    roll_back,
)
from resources.publishing.index_writer import SegmentIndexWriter
from resources.settings import Settings, get_settings
from segmentation_assets.core.segment_types import SEGMENT_TYPES
from segmentation_assets.index_and_alias import build_alias_asset, build_index_asset
from segmentation_assets.partitions import segment_partitions
from segmentation_assets.rollback import ROLLBACK_JOB
from tests.integration.es_proxy import FaultyElasticsearch
from tests.integration.publishing import (
    TYPE,
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
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

CUSTOMERS = ["c1", "c2", "c3"]


@pytest.fixture
def namespace(make_namespace: Callable[[], Settings]) -> Settings:
    return make_namespace()


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def segments_of(day: int) -> dict[str, list[str]]:
    """The calculation of 2026-11-<day>: its answers differ from every other day's."""
    return {f"seg{day}": CUSTOMERS[: 1 + day % 3], "always": CUSTOMERS}


def calculation(settings: Settings, day: int) -> None:
    write_results(settings.lake_uri, TYPE, f"2026-11-{day:02d}", segments_of(day))


def publish_days(settings: Settings, instance: dg.DagsterInstance, days: list[int]) -> dict[int, dg.ExecuteInProcessResult]:
    results = {}
    for day in days:
        calculation(settings, day)
        results[day] = publish(settings, f"2026-11-{day:02d}", instance)
        assert results[day].success, failure_text(results[day])
    return results


def generation(settings: Settings) -> int:
    return int(redis.Redis.from_url(settings.redis_url).get(generation_key(settings.index_prefix)) or 0)


def test_retention_keeps_the_last_k_and_a_backfill_keeps_the_newer_calculation_served(namespace, instance) -> None:
    results = publish_days(namespace, instance, [2, 3, 4, 5])
    index = {day: materialization(result, "index")["index"] for day, result in results.items()}

    assert type_index_names(namespace) == {index[3], index[4], index[5]}
    assert materialization(results[5], "alias")["deleted_indices"] == [index[2]]
    assert [materialization(results[d], "alias")["generation"] for d in (2, 3, 4, 5)] == [1, 2, 3, 4]
    served_generation = generation(namespace)

    calculation(namespace, 1)
    backfill = publish(namespace, "2026-11-01", instance)

    assert backfill.success, failure_text(backfill)
    published = materialization(backfill, "alias")
    assert published["kept_newer"] is True and published["switched"] is False
    assert published["index"] == index[5] and published["requested_index"] == materialization(backfill, "index")["index"]
    assert served(namespace) == [index[5]] and generation(namespace) == served_generation
    assert published["deleted_indices"] == [published["requested_index"]]  # older than the last three
    assert type_index_names(namespace) == {index[3], index[4], index[5]}


@pytest.fixture
def cli(namespace: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., object]]:
    for name, value in {
        "ELASTICSEARCH_URL": namespace.elasticsearch_url,
        "REDIS_URL": namespace.redis_url,
        "INDEX_PREFIX": namespace.index_prefix,
    }.items():
        monkeypatch.setenv(f"SEGMENTATION_{name}", value)
    get_settings.cache_clear()
    yield lambda *args: CliRunner().invoke(app, list(args))
    get_settings.cache_clear()


def test_rollback_and_roll_forward(namespace, instance, cli) -> None:
    results = publish_days(namespace, instance, [3, 4, 5])
    index = {day: materialization(result, "index")["index"] for day, result in results.items()}
    es = Elasticsearch(namespace.elasticsearch_url)
    before = generation(namespace)

    first = cli("rollback", "--segment-type", TYPE)

    assert first.exit_code == 0, first.output
    assert f"served from {index[4]} (was {index[5]}), generation {before + 1}" in first.output
    assert served(namespace) == [index[4]]
    answered = {(customer, segment) for customer, segment, _ in lookup(es, namespace, CUSTOMERS)}
    assert answered == {(c, s) for s, members in segments_of(4).items() for c in members}

    assert cli("rollback", "--segment-type", TYPE).exit_code == 0
    assert served(namespace) == [index[3]]
    last = cli("rollback", "--segment-type", TYPE)
    assert last.exit_code == 1 and f"no retained {TYPE} index older than the served one ({index[3]})" in last.output
    missing = cli("rollback", "--segment-type", TYPE, "--to", f"{namespace.index_prefix}-{TYPE}-2026-11-09-deadbeef")
    assert missing.exit_code == 1 and "does not exist" in missing.output
    # Only this deployment's indices of the type: not an alias, another type's, nor another prefix's,
    # even one verified and of the same type (prefixes share a cluster).
    foreign = f"{namespace.index_prefix}x-{TYPE}-2026-11-05-abcdef12"
    es.indices.create(index=foreign, mappings={"_meta": {"segment_type": TYPE, "verified": True}})
    try:
        other_type = next(t for t in SEGMENT_TYPES if t != TYPE)
        for name in (foreign, f"{namespace.index_prefix}-read", f"{namespace.index_prefix}-{other_type}-2026-11-05-abcdef12"):
            refused = cli("rollback", "--segment-type", TYPE, "--to", name)
            assert refused.exit_code == 1 and f"{name} is not a {TYPE} calculation's index" in refused.output, refused.output
        assert served(namespace) == [index[3]]
    finally:
        es.indices.delete(index=foreign)

    # Roll forward through the Dagster job, as an operator would from the UI.
    job = build_definitions(namespace).resolve_job_def(ROLLBACK_JOB)
    forward = job.execute_in_process(
        run_config={"ops": {"roll_back_alias": {"config": {"segment_type": TYPE, "to_index": index[5]}}}}
    )
    assert forward.success
    assert served(namespace) == [index[5]] and generation(namespace) == before + 3
    assert writer(namespace).segment_index(index[5]).meta["generation"] == before + 3

    # Retention never deletes the served index, even one older than the last K.
    assert cli("rollback", "--segment-type", TYPE, "--to", index[3]).exit_code == 0
    calculation(namespace, 1)
    backfill = publish(namespace.model_copy(update={"index_retention": 1}), "2026-11-01", instance)
    assert backfill.success, failure_text(backfill)
    assert materialization(backfill, "alias")["kept_newer"] is True
    assert type_index_names(namespace) == {index[3], index[5]}  # the served one and the newest one


def test_an_alias_step_on_its_own_publishes_only_a_verified_index(namespace, instance) -> None:
    calculation(namespace, 7)
    built = publish(namespace, "2026-11-07", instance, steps=("index",))
    assert built.success, failure_text(built)
    new_index = materialization(built, "index")["index"]
    assert lock_holder(namespace) is None  # no alias step followed in that run: nothing handed over
    assert served(namespace) == []

    writer(namespace).update_meta(new_index, verified=False)
    refused = publish(namespace, "2026-11-07", instance, steps=("alias",))
    assert not refused.success and "was never verified complete" in failure_text(refused)
    assert served(namespace) == []

    writer(namespace).update_meta(new_index, verified=True)
    switched = publish(namespace, "2026-11-07", instance, steps=("alias",))
    assert switched.success, failure_text(switched)
    assert served(namespace) == [new_index] and lock_holder(namespace) is None


@pytest.mark.parametrize("selection", [("index",), ("index", "alias")])
def test_a_scheduled_job_leaves_no_lock_behind(namespace, instance, selection) -> None:
    """Asset jobs as the schedules define them (not `materialize`): the index step hands the lock
    over only when the job's alias step follows; either way nothing is left locked."""
    calculation(namespace, 8)
    partitions = segment_partitions(namespace.partition_granularity, namespace.partitions_start_date)
    builders = {"index": build_index_asset, "alias": build_alias_asset}
    job = dg.Definitions(
        assets=[builders[step](SEGMENT_TYPES[TYPE], partitions) for step in selection],
        jobs=[dg.define_asset_job("publish_only", selection=[dg.AssetKey([TYPE, step]) for step in selection])],
        resources=build_resources(namespace),
    ).resolve_job_def("publish_only")

    result = job.execute_in_process(partition_key="2026-11-08", instance=instance)

    assert result.success
    assert lock_holder(namespace) is None
    assert (served(namespace) != []) == ("alias" in selection)


def lucene_segments(es: Elasticsearch, index: str) -> int:
    return int(es.indices.stats(index=index, metric="segments")["indices"][index]["primaries"]["segments"]["count"])


def test_a_published_index_is_merged_into_one_lucene_segment_while_it_serves(namespace, instance) -> None:
    calculation(namespace, 9)
    built = publish(namespace, "2026-11-09", instance, steps=("index",))
    assert built.success, failure_text(built)
    new_index = materialization(built, "index")["index"]
    es = Elasticsearch(namespace.elasticsearch_url)
    # More chunk documents, each refreshed on its own: a Lucene segment each, as a large load leaves several.
    for n in range(3):
        es.index(index=new_index, id=f"extra#{n}", document={"segment_id": "extra", "chunk": n}, refresh=True)
    assert lucene_segments(es, new_index) >= 3

    switched = publish(namespace, "2026-11-09", instance, steps=("alias",))

    assert switched.success, failure_text(switched)
    compaction = materialization(switched, "alias")["compaction"]
    assert compaction.startswith("task ")
    # Elasticsearch runs one force merge at a time: this one may queue behind earlier tests' merges,
    # so the client waits as long as the server does, not its default 10 s.
    es.options(request_timeout=90).tasks.get(task_id=compaction.removeprefix("task "), wait_for_completion=True, timeout="60s")
    assert lucene_segments(es, new_index) == 1
    assert served(namespace) == [new_index]
    answered = {(customer, segment) for customer, segment, _ in lookup(es, namespace, CUSTOMERS)}
    assert answered == {(customer, segment) for segment, members in segments_of(9).items() for customer in members}


def test_a_merge_that_cannot_start_does_not_undo_the_switch(namespace, instance, monkeypatch: pytest.MonkeyPatch) -> None:
    calculation(namespace, 10)
    built = publish(namespace, "2026-11-10", instance, steps=("index",))
    assert built.success, failure_text(built)
    new_index = materialization(built, "index")["index"]

    def refused(self: SegmentIndexWriter, index: str) -> str:
        raise TransportConnectionError("connection refused")

    monkeypatch.setattr(SegmentIndexWriter, "compact", refused)
    move = publish_index(writer(namespace), redis.Redis.from_url(namespace.redis_url), TYPE, new_index, retention=3)

    assert move.served == new_index and move.generation is not None
    assert move.compaction.startswith("not started: ConnectionError")
    assert served(namespace) == [new_index]


def day_2_served_and_day_3_built(namespace: Settings, instance: dg.DagsterInstance) -> tuple[list[str], str]:
    """(what serves day 2's calculation, the index of day 3's, verified but not served)."""
    publish_days(namespace, instance, [2])
    calculation(namespace, 3)
    built = publish(namespace, "2026-11-03", instance, steps=("index",))
    assert built.success, failure_text(built)
    return served(namespace), materialization(built, "index")["index"]


def test_a_switch_that_redis_cannot_number_is_refused_or_undone(namespace, instance) -> None:
    """The API's cache keys on the generation: a new index served under the old one would answer
    beside what was cached from the previous one. Redis not answering, nothing moves; Redis
    answering but giving no generation, the switch is undone. Either way the publish fails saying
    why, the previous calculation stays served, and publishing again, Redis sound, switches."""
    first, new_index = day_2_served_and_day_3_built(namespace, instance)
    before = generation(namespace)
    es = Elasticsearch(namespace.elasticsearch_url)

    def still_the_first_calculation() -> None:
        assert served(namespace) == first
        answered = {(customer, segment) for customer, segment, _ in lookup(es, namespace, CUSTOMERS)}
        assert answered == {(c, s) for s, members in segments_of(2).items() for c in members}

    proxy = TcpProxy("127.0.0.1", urlsplit(namespace.redis_url).port or 6379)
    proxy.refuse()
    try:
        with pytest.raises(PublicationRefused, match=f"Redis does not answer .*the aliases of {TYPE} did not move"):
            publish_index(writer(namespace), redis.Redis(port=proxy.port), TYPE, new_index, retention=3)
    finally:
        proxy.close()
    still_the_first_calculation()
    assert generation(namespace) == before

    # Redis answers, but its counter cannot be incremented (as if overwritten): the switch is undone.
    client = redis.Redis.from_url(namespace.redis_url)
    client.set(generation_key(namespace.index_prefix), "not a number")
    with pytest.raises(PublicationRefused, match="could not give the switch") as refused:
        publish_index(writer(namespace), client, TYPE, new_index, retention=3)
    assert f"the aliases are back on {first[0]}" in str(refused.value)
    assert "may be served until they expire" in str(refused.value)  # no new generation either
    still_the_first_calculation()

    client.set(generation_key(namespace.index_prefix), before)
    switched = publish(namespace, "2026-11-03", instance, steps=("alias",))
    assert switched.success, failure_text(switched)
    assert served(namespace) == [new_index] and generation(namespace) == before + 1


def failing_scripts(client: redis.Redis, times: int) -> redis.Redis:
    """The client, its next `times` script calls (the generation's INCR) losing their connection."""
    evalsha = client.evalsha
    left = [times]

    def flaky(*args: Any) -> Any:
        if left[0] > 0:
            left[0] -= 1
            raise redis.ConnectionError("connection lost (injected)")
        return evalsha(*args)

    client.evalsha = flaky  # type: ignore[method-assign]
    return client


def test_a_lost_connection_is_asked_again_and_an_undo_retires_what_was_cached(namespace, instance) -> None:
    first, new_index = day_2_served_and_day_3_built(namespace, instance)
    before = generation(namespace)
    url = namespace.redis_url

    # One attempt's connection lost: the next one numbers the switch.
    move = publish_index(writer(namespace), failing_scripts(redis.Redis.from_url(url), 1), TYPE, new_index, retention=3)
    assert served(namespace) == [new_index] and move.generation == generation(namespace) == before + 1

    # A rollback, every attempt lost: the switch is undone, and a new generation retires what
    # readers may have cached from the index it had moved to meanwhile.
    with pytest.raises(PublicationRefused, match=f"the aliases are back on {new_index}") as refused:
        roll_back(writer(namespace), failing_scripts(redis.Redis.from_url(url), GENERATION_ATTEMPTS), TYPE)
    assert "until the next switch" not in str(refused.value)
    assert served(namespace) == [new_index] and generation(namespace) == before + 2
    assert first != [new_index]


def test_what_fails_after_the_switch_is_reported_and_the_switch_stands(namespace, instance) -> None:
    """Once the aliases moved and the generation is given, the publish has happened: failing to
    record the generation in `_meta`, or retention failing, is reported beside it, not as a failed
    publish (which would say that the previous calculation is still served)."""
    [old_index], new_index = day_2_served_and_day_3_built(namespace, instance)
    before = generation(namespace)
    faulty = FaultyElasticsearch(namespace.elasticsearch_url)
    failing = {("PUT", f"/{new_index}/_mapping"), ("DELETE", f"/{old_index}")}  # the _meta update, retention
    faulty.fail_request = lambda method, path: 503 if (method, path) in failing else None
    client = redis.Redis.from_url(namespace.redis_url)
    try:
        move = publish_index(writer(namespace, faulty.url), client, TYPE, new_index, retention=1)
    finally:
        faulty.close()
    assert move.served == new_index and move.previous == [old_index] and move.generation == before + 1
    assert served(namespace) == [new_index] and generation(namespace) == before + 1
    assert len(move.problems) == 2, move.problems
    assert f"its _meta lacks generation {before + 1}" in move.problems[0] and "retention stopped" in move.problems[1]
    assert old_index in type_index_names(namespace)  # not deleted: the next publish will

    again = publish(namespace.model_copy(update={"index_retention": 1}), "2026-11-03", instance, steps=("alias",))
    assert again.success, failure_text(again)
    assert writer(namespace).segment_index(new_index).meta["generation"] == generation(namespace) == before + 2
    assert type_index_names(namespace) == {new_index}


def test_a_lock_lost_during_the_switch_is_reported_and_the_switch_stands(namespace, instance) -> None:
    _, new_index = day_2_served_and_day_3_built(namespace, instance)
    client = redis.Redis.from_url(namespace.redis_url)
    faulty = FaultyElasticsearch(namespace.elasticsearch_url)

    def lose_the_lock_at_the_switch(method: str, path: str) -> None:
        if (method, path) == ("POST", "/_aliases"):
            client.delete(ingestion_lock_key(namespace.index_prefix, TYPE))  # it expired meanwhile, say
        return None  # and forward the request

    faulty.fail_request = lose_the_lock_at_the_switch
    try:
        result = publish(namespace.model_copy(update={"elasticsearch_url": faulty.url}), "2026-11-03", instance, steps=("alias",))
    finally:
        faulty.close()
    assert result.success, failure_text(result)  # the aliases moved: a failed run would say they did not
    assert served(namespace) == [new_index]
    assert any("lost the ingestion lock" in problem for problem in materialization(result, "alias")["problems"])


def test_an_index_served_without_a_generation_gets_one_when_published_again(namespace, instance) -> None:
    """Where even the undo failed, the new index is served under the old generation: publishing it
    again, rather than finding it served already and doing nothing, gives it a new one."""
    calculation(namespace, 4)
    built = publish(namespace, "2026-11-04", instance, steps=("index",))
    assert built.success, failure_text(built)
    new_index = materialization(built, "index")["index"]
    writer(namespace).switch_alias(TYPE, new_index)  # switched, and then Redis gave no generation
    before = generation(namespace)

    again = publish(namespace, "2026-11-04", instance, steps=("alias",))
    assert again.success, failure_text(again)
    assert served(namespace) == [new_index] and generation(namespace) == before + 1
    assert writer(namespace).segment_index(new_index).meta["generation"] == before + 1
