"""Two ingestions of one type never run at once: the Redis lock on the real Redis, and two
real ingestions started together; on a plain Redis, then on a Redis Cluster."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import dagster as dg
import pytest
import redis
from elasticsearch import Elasticsearch

from resources.lake.storage import Lake
from resources.publishing.index_writer import SegmentIndexWriter
from resources.publishing.ingestion import IngestionSettings, ingest_calculation
from resources.publishing.lock import IngestionLock, IngestionLocked
from resources.redis_clients import SyncRedis
from resources.settings import Settings
from segmentation_assets.rollback import roll_back_with_settings
from tests.integration.es_proxy import FaultyElasticsearch
from tests.integration.publishing import (
    TYPE,
    failure_text,
    lock_holder,
    materialization,
    publish,
    served,
    type_index_names,
)
from tests import namespaces
from tests.integration.results_folder import write_results
from tests.redis_servers import cache_redis, coordination_redis
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings(settings_on_each_redis: Settings) -> Settings:
    """The tests that use it run on a plain Redis, then on a Redis Cluster."""
    return settings_on_each_redis


@pytest.fixture
def client(settings: Settings) -> SyncRedis:
    return cache_redis(settings)


@pytest.fixture
def make_lock(client: SyncRedis) -> Iterator[Callable[..., IngestionLock]]:
    prefix = f"test-lock-{uuid.uuid4().hex[:8]}"  # no test sees another's lock

    def make(owner: str, seconds: int = 30) -> IngestionLock:
        return IngestionLock(client, prefix, TYPE, seconds, owner)

    yield make
    client.delete(make("cleanup").name)  # a test may leave it to another owner, without an expiry


def test_a_second_owner_is_refused_with_the_holder_named(client, make_lock) -> None:
    first, second = make_lock("run-a"), make_lock("run-b")
    with first.held():
        with pytest.raises(IngestionLocked, match=r"another ingestion of segment type 'new_customers' is running .*held by run-a"):
            second.acquire()
    with second.held():  # the first released it on leaving
        pass
    assert client.get(first.name) is None


def test_the_same_owner_adopts_a_handed_over_lock_and_releases_it(client, make_lock) -> None:
    with make_lock("run-a").held() as held:
        held.hand_over()
    alias_step = make_lock("run-a")
    assert client.get(alias_step.name) == b"run-a"
    with pytest.raises(IngestionLocked):
        make_lock("run-b").acquire()
    with alias_step.held():
        assert client.get(alias_step.name) == b"run-a"
    assert client.get(alias_step.name) is None


def test_a_failing_holder_releases_even_when_it_meant_to_hand_over(client, make_lock) -> None:
    step = make_lock("run-a")
    with pytest.raises(RuntimeError), step.held() as held:
        held.hand_over()
        raise RuntimeError("load failed")
    assert client.get(step.name) is None


def test_the_lock_is_renewed_while_held_and_expires_after_a_crash(client, make_lock) -> None:
    holder = make_lock("run-a", seconds=1)
    with holder.held():
        time.sleep(2.5)  # more than twice the expiry
        assert client.get(holder.name) == b"run-a"
    make_lock("run-crashed", seconds=1).acquire()  # and never released nor renewed
    time.sleep(1.3)
    make_lock("run-next", seconds=1).acquire()


def test_a_holder_that_lost_its_lock_fails(client, make_lock) -> None:
    holder = make_lock("run-a", seconds=1)
    with pytest.raises(IngestionLocked, match="lost the ingestion lock"), holder.held():
        client.delete(holder.name)  # Redis lost it: another ingestion could start now
        time.sleep(0.8)  # the next renewal finds out


def test_renewal_rides_out_a_redis_outage_shorter_than_the_expiry(client, settings: Settings) -> None:
    if settings.redis_cluster:
        pytest.skip("a cluster client reaches the masters at their own addresses, past a proxy before one of them")
    proxy = TcpProxy("127.0.0.1", urlsplit(settings.redis_url).port or 6379)
    try:
        # As the Dagster resource makes its client: without redis-py's own retries, which could hide the outage.
        through_proxy = redis.Redis.from_url(f"redis://127.0.0.1:{proxy.port}/0", socket_timeout=1)
        holder = IngestionLock(through_proxy, f"test-lock-{uuid.uuid4().hex[:8]}", TYPE, 3, "run-a")
        with holder.held() as held:
            proxy.refuse()
            time.sleep(1.6)  # a renewal (every 1 s) fails; the lock lasts 3 s
            proxy.forward()
            time.sleep(1.5)  # past the expiry that the failed renewal would have extended
            assert client.get(holder.name) == b"run-a"
            held.confirm()
    finally:
        proxy.close()
    assert client.get(holder.name) is None  # released on leaving, no error


def test_confirm_says_whether_the_lock_is_still_the_holders(client, make_lock) -> None:
    holder = make_lock("run-a")
    with pytest.raises(IngestionLocked), holder.held() as held:
        held.confirm()
        client.set(holder.name, "run-b")  # it expired, and another ingestion took it
        with pytest.raises(IngestionLocked, match="another owner, or none, holds it"):
            held.confirm()
    assert client.get(holder.name) == b"run-b"  # not released: it is not ours


def test_an_index_is_not_verified_once_the_lock_is_lost(namespace) -> None:
    write_results(namespace.lake_uri, TYPE, "2026-11-20", {"seg": ["c1", "c2"]})
    es = Elasticsearch(namespace.elasticsearch_url)

    def lost() -> None:
        raise IngestionLocked("lost the ingestion lock")

    with pytest.raises(IngestionLocked):
        ingest_calculation(
            SegmentIndexWriter(es, namespace.index_prefix), Lake(namespace.lake_uri), TYPE, "2026-11-20", "run-lost",
            IngestionSettings(), confirm_lock=lost,
        )
    assert type_index_names(namespace) == set()  # built, checked complete, then deleted: never marked verified


@pytest.fixture
def namespace(make_namespace: Callable[[], Settings]) -> Settings:
    """A namespace of its own on the plain Redis, for a test that runs once."""
    return make_namespace().model_copy(update={"ingest_chunk_size": 5, "ingest_bulk_bytes": 1000})


@pytest.fixture
def namespace_on_each_redis(namespace: Settings, settings: Settings) -> Iterator[Settings]:
    """A namespace of its own on the Redis of `settings`: a plain one, then a cluster."""
    on_redis = namespace.model_copy(
        update={"redis_url": settings.redis_url, "redis_cluster": settings.redis_cluster, "lock_redis_url": settings.lock_redis_url}
    )
    yield on_redis
    if on_redis.redis_cluster:  # the session removes what namespaces leave on the plain Redis
        namespaces.remove_keys(cache_redis(on_redis), namespaces.run_of(on_redis.index_prefix))


@pytest.fixture
def proxy(namespace: Settings) -> Iterator[FaultyElasticsearch]:
    faulty = FaultyElasticsearch(namespace.elasticsearch_url)
    yield faulty
    faulty.close()


def test_two_ingestions_of_one_type_at_once_one_runs_one_refuses(namespace_on_each_redis: Settings, proxy) -> None:
    namespace = namespace_on_each_redis
    write_results(namespace.lake_uri, TYPE, "2026-11-20", {"a": [f"c{n:04d}" for n in range(50)]})
    write_results(namespace.lake_uri, TYPE, "2026-11-21", {"a": [f"c{n:04d}" for n in range(60)]})
    proxy.open.clear()  # the first ingestion's bulk requests wait here, mid-load, lock held
    outcome: dict[str, dg.ExecuteInProcessResult] = {}

    def first() -> None:
        with dg.instance_for_test() as instance:
            outcome["first"] = publish(namespace.model_copy(update={"elasticsearch_url": proxy.url}), "2026-11-20", instance)

    runner = threading.Thread(target=first)
    runner.start()
    assert proxy.bulk_waiting.wait(60), "the first ingestion never started loading"
    holder = lock_holder(namespace)
    indices_while_loading = type_index_names(namespace)

    with dg.instance_for_test() as instance:
        second = publish(namespace, "2026-11-21", instance)
    with pytest.raises(IngestionLocked):
        roll_back_with_settings(namespace, TYPE, None)  # a rollback waits its turn too

    assert not second.success
    message = failure_text(second)
    assert "another ingestion of segment type 'new_customers' is running" in message
    assert holder is not None and holder.decode() in message
    assert type_index_names(namespace) == indices_while_loading  # the refused one built nothing
    proxy.open.set()
    runner.join(120)
    assert outcome["first"].success, failure_text(outcome["first"])
    assert served(namespace) == [materialization(outcome["first"], "index")["index"]]
    assert lock_holder(namespace) is None


def test_a_step_refused_by_a_held_lock_is_retried_and_publishes_once_it_is_free(namespace) -> None:
    """The steps' retry policy (Settings.step_max_retries): another run's lock may pass. The lock is
    released once the step has been refused and is waiting for its retry."""
    from definitions import build_definitions
    from segmentation_assets.index_and_alias import alias_key, index_key

    write_results(namespace.lake_uri, TYPE, "2026-11-22", {"a": ["c1", "c2", "c3"]})
    # Jitter can make a retry come at once, before the lock is released: room for a second one.
    retrying = namespace.model_copy(update={"step_max_retries": 3, "step_retry_delay_seconds": 2.0})
    other = IngestionLock(redis.Redis.from_url(namespace.coordination_redis_url), namespace.index_prefix, TYPE, 60, "another-run")
    other.acquire()
    job = build_definitions(retrying).resolve_implicit_global_asset_job_def()
    outcome: dict[str, dg.ExecuteInProcessResult] = {}
    with dg.instance_for_test() as instance:
        runner = threading.Thread(
            target=lambda: outcome.update(
                result=job.execute_in_process(
                    partition_key="2026-11-22",
                    asset_selection=[index_key(TYPE), alias_key(TYPE)],
                    instance=instance,
                    raise_on_error=False,
                )
            )
        )
        runner.start()
        deadline = time.monotonic() + 120
        while not any(
            instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY) for run in instance.get_runs()
        ):
            assert runner.is_alive() and time.monotonic() < deadline, "the step was never refused and retried"
            time.sleep(0.1)
        other.release()
        runner.join(120)
    result = outcome["result"]
    assert result.success, failure_text(result)
    retried = [e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert retried and set(retried) == {index_key(TYPE).to_python_identifier()}
    assert served(namespace) == [materialization(result, "index")["index"]]


def test_without_retries_a_held_lock_fails_the_step_at_once(namespace_on_each_redis: Settings) -> None:
    from definitions import build_definitions
    from segmentation_assets.index_and_alias import index_key

    namespace = namespace_on_each_redis
    write_results(namespace.lake_uri, TYPE, "2026-11-22", {"a": ["c1"]})
    other = IngestionLock(coordination_redis(namespace), namespace.index_prefix, TYPE, 30, "another-run")
    with other.held():
        job = build_definitions(namespace).resolve_implicit_global_asset_job_def()
        with dg.instance_for_test() as instance:
            started = time.monotonic()
            result = job.execute_in_process(
                partition_key="2026-11-22", asset_selection=[index_key(TYPE)], instance=instance, raise_on_error=False
            )
    assert not result.success and time.monotonic() - started < 30
    assert not [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
