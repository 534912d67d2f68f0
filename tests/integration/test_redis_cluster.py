"""A Redis Cluster (`SEGMENTATION_REDIS_CLUSTER`), on the tests' local cluster of three masters: a
cluster setting that the server contradicts fails at startup, naming the setting; and a slot that
moves while lookups run (MOVED, ASK) costs no failed request, nor any cache read or write.

The lookup, cache and lock tests run on this cluster too (`settings_on_each_redis` in conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from redis.crc import key_slot
from redis.exceptions import AskError, MovedError

from api.main import create_app
from definitions import build_resources
from devtools.local_services import redis_cluster_up, services_down, services_status, services_up
from devtools.local_services.redis_cluster import node_url
from resources.config_store.api_keys import ApiKeyRepository
from resources.config_store.database import session_factory
from resources.config_store.revocations import announce_revocation, listen_for_revocations
from resources.names import CacheKind, generation_key, lookup_key, served_indices_key
from resources.redis_clients import RedisClusterMismatch, async_redis_client, cache_server
from resources.settings import Settings
from tests import namespaces
from tests.published_segments import publish
from tests.redis_servers import TEST_CLUSTER_PORT, cache_redis, get_many

pytestmark = pytest.mark.integration

CUSTOMERS = [f"c{i:03d}" for i in range(40)]
SEGMENTS = {
    "seg-a": ({"name": "a"}, CUSTOMERS[:25]),
    "seg-b": ({"name": "b"}, CUSTOMERS[15:]),
}


def expected(customer_id: str) -> list[str]:
    return sorted(s for s, (_, members) in SEGMENTS.items() if customer_id in members)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def cache_errors() -> float:
    return sum(metric("segmentation_cache_errors_total", operation=op) for op in ("served", "generation", "get", "set"))


@pytest.fixture(scope="module")
def on_cluster(make_namespace: Callable[[], Settings], redis_cluster: Settings) -> Iterator[Settings]:
    namespace = make_namespace()
    yield namespace.model_copy(update={"redis_url": redis_cluster.redis_url, "redis_cluster": True, "lock_redis_url": None})
    namespaces.remove_keys(cache_redis(redis_cluster), namespaces.run_of(namespace.index_prefix))


def test_the_local_cluster_has_three_masters_serving_every_slot_and_a_second_up_changes_nothing(redis_cluster: Settings) -> None:
    client = cache_redis(redis_cluster)
    masters = [node for node in client.cluster_nodes().values() if "master" in node["flags"]]
    assert len(masters) == 3
    assert sum(end - start + 1 for node in masters for start, end in (map(int, s) for s in node["slots"])) == 16_384
    started = time.monotonic()
    state = redis_cluster_up(redis_cluster)
    # Managed by whichever checkout started it: another checkout on this machine finds it external.
    assert state.running and "every slot served" in state.detail
    assert time.monotonic() - started < 5


def _free_ports(count: int) -> int:
    """The first of `count` consecutive free ports, each with its cluster bus port (+ 10000) free too."""
    for _ in range(100):
        first = random.randrange(20_000, 30_000 - count)
        ports = [p for n in range(count) for p in (first + n, first + n + 10_000)]
        with contextlib.ExitStack() as probes:
            try:
                for port in ports:
                    probes.enter_context(socket.create_server(("127.0.0.1", port)))
            except OSError:
                continue
        return first
    raise AssertionError("no free ports")


def test_up_starts_a_cluster_for_a_state_folder_of_its_own_and_down_stops_it(services: Settings) -> None:
    """What `SEGMENTATION_REDIS_CLUSTER=true segmentation services up` does, then `services down`."""
    state_dir = Path(services.state_dir) / f"test-{uuid.uuid4().hex[:8]}"  # reachable by the service user
    first = _free_ports(3)
    own = services.model_copy(update={"state_dir": state_dir, "redis_url": f"redis://127.0.0.1:{first}/0", "redis_cluster": True})
    try:
        redis_state = {s.name: s for s in services_up(own)}["Redis Cluster"]
        assert redis_state.running and redis_state.managed, redis_state
        assert sorted(p.name for p in (state_dir / "redis-cluster").iterdir()) == [str(first + n) for n in range(3)]
        with cache_redis(own) as client:
            client.set("k", "v")  # a key in some slot, on whichever master serves it
            assert client.get("k") == b"v"
        stopped = {s.name: s for s in services_down(own)}
        assert not stopped["Redis Cluster"].running and "stopped the nodes" in stopped["Redis Cluster"].detail
        assert not {s.name: s for s in services_status(own)}["Redis Cluster"].running
    finally:
        services_down(own)
        shutil.rmtree(state_dir, ignore_errors=True)


# --- a setting that does not match the server fails at startup, naming it ---------------------


@pytest.mark.parametrize("told", ["cluster on a plain Redis", "plain on a cluster node"])
def test_the_api_refuses_to_start_when_the_cluster_setting_contradicts_the_server(
    settings: Settings, redis_cluster: Settings, told: str
) -> None:
    if told == "cluster on a plain Redis":
        wrong, says = settings.model_copy(update={"redis_cluster": True}), "SEGMENTATION_REDIS_CLUSTER is true"
    else:
        wrong, says = settings.model_copy(update={"redis_url": redis_cluster.redis_url}), "SEGMENTATION_REDIS_CLUSTER is false"
    with pytest.raises(RedisClusterMismatch, match=says) as refused, TestClient(create_app(wrong)):
        pass
    assert "SEGMENTATION_REDIS_URL" in str(refused.value)


def test_the_coordination_redis_is_checked_by_its_own_setting(settings: Settings, redis_cluster: Settings) -> None:
    # The cache's Redis is plain, as told; the coordination's is a cluster node, and its setting,
    # unset, follows SEGMENTATION_REDIS_CLUSTER (false).
    wrong = settings.model_copy(update={"lock_redis_url": redis_cluster.redis_url})
    says = r"SEGMENTATION_LOCK_REDIS_CLUSTER \(unset, so as SEGMENTATION_REDIS_CLUSTER\) is false"
    with pytest.raises(RedisClusterMismatch, match=says):
        with TestClient(create_app(wrong)):
            pass
    with build_resources(wrong)["redis"].process_config_and_initialize_cm() as resource:  # the pipeline's too
        with pytest.raises(RedisClusterMismatch, match=says):
            resource.client()
    told = wrong.model_copy(update={"lock_redis_cluster": True})
    with TestClient(create_app(told)) as client:
        assert client.get("/readyz").json()["checks"]["redis_coordination"] == "ok"


@pytest.mark.parametrize("cluster", [True, False])
def test_the_dagster_resource_refuses_a_cluster_setting_that_contradicts_the_server(
    settings: Settings, redis_cluster: Settings, cluster: bool
) -> None:
    """What the index and alias steps and `segmentation rollback` use: the step fails, naming the setting."""
    wrong = settings.model_copy(update={"redis_cluster": cluster, "redis_url": settings.redis_url if cluster else redis_cluster.redis_url})
    with build_resources(wrong)["redis"].process_config_and_initialize_cm() as resource:
        with pytest.raises(RedisClusterMismatch, match=f"SEGMENTATION_REDIS_CLUSTER is {str(cluster).lower()}"):
            resource.client()


def test_revocation_notices_cross_the_cluster(redis_cluster: Settings) -> None:
    """Pub/sub needs no slot: a notice published on one master reaches a listener on another
    (PUBLISH counts only the listeners of the master it was sent to: none here)."""
    heard: list[str] = []
    first, last = redis_cluster.redis_url, node_url(redis_cluster.redis_url, TEST_CLUSTER_PORT + 2)

    async def scenario() -> None:
        subscribed = asyncio.Event()
        listening = asyncio.create_task(listen_for_revocations(first, "test-revocations", heard.append, subscribed))
        try:
            await asyncio.wait_for(subscribed.wait(), 5)
            await asyncio.to_thread(announce_revocation, last, "test-revocations", "key-1")
            deadline = time.monotonic() + 5
            while not heard and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        finally:
            listening.cancel()

    asyncio.run(scenario())
    assert heard == ["key-1"]


# --- a slot moving during lookups ----------------------------------------------------------------


@dataclass(frozen=True)
class Master:
    client: redis.Redis  # a plain connection to this master alone, as an operator's redis-cli
    node_id: str
    port: int


def masters(cluster: Settings) -> list[Master]:
    found = []
    for node in cache_redis(cluster).get_primaries():
        client = redis.Redis(host=node.host, port=node.port)
        found.append(Master(client, client.execute_command("CLUSTER MYID").decode(), node.port))
    return found


def owner(all_masters: list[Master], slot: int) -> Master:
    """The master that serves `slot`, as the cluster's map says."""
    for start, end, *nodes in all_masters[0].client.execute_command("CLUSTER SLOTS"):
        if start <= slot <= end:
            return next(m for m in all_masters if m.port == int(nodes[0][1]))
    raise AssertionError(f"no master serves slot {slot}")


def move_slot(all_masters: list[Master], slot: int, source: Master, target: Master, between: Callable[[str], None]) -> None:
    """What `redis-cli --cluster reshard` does for one slot, calling `between(stage)` at each stage:
    "migrating" (its keys still on the source), "keys moved" (the source answers ASK for them),
    "moved" (the slot is the target's: the source answers MOVED)."""
    target.client.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source.node_id)
    source.client.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target.node_id)
    between("migrating")
    keys = source.client.execute_command("CLUSTER GETKEYSINSLOT", slot, 1000)
    if keys:  # in one MIGRATE: keys read together never sit on two masters
        source.client.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
    between("keys moved")
    for master in [target, source, *[m for m in all_masters if m not in (source, target)]]:
        master.client.execute_command("CLUSTER SETSLOT", slot, "NODE", target.node_id)
    between("moved")


def restore(all_masters: list[Master], slot: int, home: Master) -> None:
    """The slot back on `home`, stable on every master, with every key it holds: the cluster as it
    was, whatever a test left. A move left half-made is finished first, then made back."""
    for other in [m for m in all_masters if m is not home]:
        if other.client.execute_command("CLUSTER COUNTKEYSINSLOT", slot):  # keys went there: the slot follows them
            keys = home.client.execute_command("CLUSTER GETKEYSINSLOT", slot, 1000)
            if keys:
                home.client.execute_command("MIGRATE", "127.0.0.1", other.port, "", 0, 5000, "KEYS", *keys)
            for master in [other, home, *[m for m in all_masters if m not in (other, home)]]:
                master.client.execute_command("CLUSTER SETSLOT", slot, "NODE", other.node_id)
            move_slot(all_masters, slot, other, home, lambda stage: None)
    for master in all_masters:  # SETSLOT NODE clears only an owner's own importing or migrating
        master.client.execute_command("CLUSTER SETSLOT", slot, "STABLE")
    for master in [home, *[m for m in all_masters if m is not home]]:
        master.client.execute_command("CLUSTER SETSLOT", slot, "NODE", home.node_id)


def open_slots(all_masters: list[Master]) -> list[dict[str, str]]:
    """The slots a master is importing or migrating, as each says of itself."""
    return [
        migration
        for master in all_masters
        for node in master.client.execute_command("CLUSTER NODES").values()
        if "myself" in node["flags"]
        for migration in node["migrations"]
    ]


def customers_in_slot(prefix: str, slot: int, count: int) -> list[str]:
    """Ids no lookup asked for yet, whose entries fall in `slot`."""
    found = []
    for n in range(10_000_000):
        if key_slot(lookup_key(prefix, CacheKind.MEMBERSHIPS, f"new-{n}").encode()) == slot:
            found.append(f"new-{n}")
            if len(found) == count:
                return found
    raise AssertionError(f"no id found for slot {slot}")


def test_a_busy_client_reads_and_writes_a_slot_being_migrated_through_ask(on_cluster: Settings) -> None:
    """The API's cluster client, with several idle connections to each master (any process under
    load): ASKING and the command it allows must share one (resources/redis_clients.py)."""
    prefix = on_cluster.index_prefix
    moved = f"{prefix}:lookup:m:asked"
    slot = key_slot(moved.encode())
    all_masters = masters(on_cluster)
    source = owner(all_masters, slot)
    target = next(m for m in all_masters if m is not source)
    newcomer = lookup_key(prefix, CacheKind.MEMBERSHIPS, customers_in_slot(prefix, slot, 1)[0])

    async def scenario() -> tuple[bytes | None, bytes | None]:
        client = async_redis_client(cache_server(on_cluster))
        try:
            await client.set(moved, b"before")
            await asyncio.gather(*(client.get(f"{prefix}:lookup:m:warm-{n}") for n in range(200)))
            target.client.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source.node_id)
            source.client.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target.node_id)
            source.client.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", moved)
            with pytest.raises(AskError):
                source.client.get(moved)
            await client.set(newcomer, b"new")  # not on the source: ASK, and written on the target
            pipe = client.pipeline(transaction=False)  # the cache's writes on a cluster: a pipeline per master
            pipe.set(newcomer, b"newer").set(f"{prefix}:lookup:m:elsewhere", b"x")
            await pipe.execute()
            # The cache's reads on a cluster: an MGET per slot, a pipeline per master.
            return tuple(await client.mget_nonatomic([moved, newcomer, f"{prefix}:lookup:m:elsewhere"]))
        finally:
            restore(all_masters, slot, source)
            await client.aclose()

    assert asyncio.run(scenario()) == (b"before", b"newer", b"x")
    assert open_slots(all_masters) == []


@pytest.fixture(scope="module")
def served_on_cluster(on_cluster: Settings, tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict[str, str]]:
    settings = on_cluster.model_copy(
        update={
            "lookup_generation_refresh_seconds": 0.0,  # what is served is read from Redis at every lookup
            "lookup_near_cache_entries": 0,  # every lookup reads Redis
            "api_search_budget_seconds": 5.0,
            "api_redis_timeout_seconds": 2.0,  # this shared machine's slack: only redirections are under test
            "state_dir": Path(tmp_path_factory.mktemp("state")),
        }
    )
    publish(settings, "new_customers", SEGMENTS, chunk_size=10)
    key = ApiKeyRepository(session_factory(settings.database_url)).create("cluster-reader", "read")
    return settings, {"Authorization": f"Bearer {key}"}


def test_a_slot_moving_during_lookups_costs_no_failed_request(served_on_cluster) -> None:
    """Moves, one after the other, the slot of a customer's entry and the slot of the generation
    and the record of what is served, there and back, while another API process keeps asking."""
    settings, headers = served_on_cluster
    prefix = settings.index_prefix
    customer = "c020"
    slots = {
        "a customer's entry": key_slot(lookup_key(prefix, CacheKind.MEMBERSHIPS, customer).encode()),
        "what is served": key_slot(generation_key(prefix).encode()),
    }
    assert key_slot(served_indices_key(prefix).encode()) == slots["what is served"]  # one hash tag, one slot
    all_masters = masters(settings)
    cache = cache_redis(settings)
    failures: list[str] = []
    stop = threading.Event()

    def ask(client: TestClient, customer_id: str) -> None:
        response = client.get(f"/v1/customers/{customer_id}/segments", headers=headers)
        if response.status_code != 200 or [s["segment_id"] for s in response.json()["segments"]] != expected(customer_id):
            failures.append(f"{customer_id}: {response.status_code} {response.text[:200]}")

    def keep_asking(client: TestClient) -> None:  # another API process, single and batch lookups
        n = 0
        while not stop.is_set():
            ask(client, CUSTOMERS[n % len(CUSTOMERS)])
            batch = CUSTOMERS[n % 20 : n % 20 + 20]
            response = client.post("/v1/customers/segments:batch", json={"customer_ids": batch}, headers=headers)
            answers = response.json().get("results", {}) if response.status_code == 200 else {}
            if any([s["segment_id"] for s in answers.get(c, [{"segment_id": "?"}])] != expected(c) for c in batch):
                failures.append(f"batch: {response.status_code} {response.text[:200]}")
            n += 1

    def searches() -> float:
        return metric("segmentation_elasticsearch_request_duration_seconds_count", operation="customer_segments", outcome="ok")

    def wait_until_cached(customer_ids: list[str]) -> None:
        keys = [lookup_key(prefix, CacheKind.MEMBERSHIPS, c) for c in customer_ids]
        deadline = time.monotonic() + 5
        while None in get_many(cache, keys):  # written behind the answers
            assert time.monotonic() < deadline, f"{customer_ids} never cached"
            time.sleep(0.01)

    with TestClient(create_app(settings)) as client, TestClient(create_app(settings)) as other:
        for customer_id in CUSTOMERS:
            ask(client, customer_id)
        wait_until_cached(CUSTOMERS)
        errors_before = cache_errors()
        background = threading.Thread(target=keep_asking, args=(other,))
        background.start()
        try:
            for what, slot in slots.items():
                source = owner(all_masters, slot)
                target = next(m for m in all_masters if m is not source)
                probe = lookup_key(prefix, CacheKind.MEMBERSHIPS, customer) if what == "a customer's entry" else generation_key(prefix)
                fresh = iter(customers_in_slot(prefix, slot, 3))

                def between(stage: str) -> None:
                    redirection = {"migrating": None, "keys moved": AskError, "moved": MovedError}[stage]
                    if redirection is not None:  # what a client that has not followed the slot is told
                        with pytest.raises(redirection):
                            source.client.get(probe)
                    hits, searched = metric("segmentation_cache_lookups_total", kind="m", result="hit"), searches()
                    for _ in range(3):
                        ask(client, customer)
                    # Answered from Redis: what is served, read by a script, and the entry by MGET.
                    assert metric("segmentation_cache_lookups_total", kind="m", result="hit") >= hits + 3, (what, stage)
                    assert searches() == searched, (what, stage)
                    # A customer asked for the first time: its entry is written where the slot is now.
                    newcomer = next(fresh)
                    ask(client, newcomer)
                    wait_until_cached([newcomer])

                try:
                    move_slot(all_masters, slot, source, target, between)
                    move_slot(all_masters, slot, target, source, lambda stage: ask(client, customer))
                finally:
                    restore(all_masters, slot, source)
            time.sleep(0.2)  # the other process meets the slots back where they were too
        finally:
            stop.set()
            background.join(30)
        assert cache_errors() == errors_before  # no Redis read or write failed: none fell back to Elasticsearch
    assert failures == []
    assert open_slots(all_masters) == []  # the cluster as it was
