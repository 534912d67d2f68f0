"""Elasticsearch as a cluster, on the tests' local two-node cluster (`elasticsearch_cluster` in
conftest.py): a calculation is published by the index and alias assets into an index sized from
its memberships, with one replica; the API, given both nodes' URLs, answers lookups; a node
stopped costs no lookup, and started again, the cluster goes green by itself.

What a stopped node means with two master-eligible nodes: Elasticsearch keeps one of them out of
the voting configuration (it must stay odd), so one node holds the only vote, usually the elected
master. The test stops a node that holds a primary of the served index, the master when it holds
one: when that node held the vote, the survivor has no master and cannot promote its replica, yet
it still answers searches from that replica (`cluster.no_master_block` blocks writes only); else
the survivor promotes the replica and the cluster is yellow. Lookups are answered either way.

Expected answers are computed here, from the memberships written, with none of the serving code.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from elasticsearch import Elasticsearch
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from api.main import create_app
from devtools.local_services import elasticsearch_cluster_up
from devtools.local_services.elasticsearch_cluster import cluster_nodes, stop_cluster_node
from devtools.local_services.layout import layout_for
from resources.config_store.api_keys import ApiKeyRepository
from resources.config_store.database import session_factory
from resources.names import read_alias, type_alias
from resources.settings import Settings
from tests.elasticsearch_servers import TEST_ES_CLUSTER_PORT, cluster_client
from tests.integration.publishing import TYPE, failure_text, materialization, publish
from tests.integration.results_folder import write_results
from tests.redis_servers import cache_redis, unlink_matching

pytestmark = pytest.mark.integration

PARTITION = "2026-11-20"
CUSTOMERS = [f"c{n:03d}" for n in range(60)]
SEGMENTS = {
    "evens": CUSTOMERS[::2],  # 30
    "first-half": CUSTOMERS[:30],  # 30
    "fives": CUSTOMERS[::5],  # 12
    "empty": [],
}
MEMBERSHIPS_PER_SHARD = 40  # 72 memberships: 2 shards
GREEN_WITHIN_S = 60.0  # from the node's start to green


def expected(customer_id: str) -> list[str]:
    return sorted(segment for segment, members in SEGMENTS.items() if customer_id in members)


@pytest.fixture(scope="module")
def on_cluster(
    make_namespace: Callable[[], Settings], elasticsearch_cluster: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    namespace = make_namespace().model_copy(
        update={
            "elasticsearch_url": elasticsearch_cluster.elasticsearch_url,
            "index_replicas": "1",
            "index_memberships_per_shard": MEMBERSHIPS_PER_SHARD,
            # Every lookup after the stop must reach Elasticsearch: no in-process cache, and the
            # Redis entries are removed before (`answers_from_elasticsearch`).
            "lookup_near_cache_entries": 0,
            "lookup_generation_refresh_seconds": 0.0,
            "api_search_budget_seconds": 5.0,  # a shared machine
            "state_dir": Path(tmp_path_factory.mktemp("state")),
        }
    )
    yield namespace
    cluster_client(namespace).options(ignore_status=404).indices.delete(
        index=f"{namespace.index_prefix}-*", allow_no_indices=True, expand_wildcards="all"
    )


@pytest.fixture(scope="module")
def published(on_cluster: Settings) -> tuple[str, dict[str, Any]]:
    write_results(on_cluster.lake_uri, TYPE, PARTITION, SEGMENTS)
    with dg.instance_for_test() as instance:
        result = publish(on_cluster, PARTITION, instance)
    assert result.success, failure_text(result)
    return materialization(result, "alias")["index"], materialization(result, "index")


@pytest.fixture(scope="module")
def api(on_cluster: Settings, published) -> Iterator[tuple[TestClient, dict[str, str]]]:
    key = ApiKeyRepository(session_factory(on_cluster.database_url)).create("cluster-reader", "read")
    with TestClient(create_app(on_cluster)) as client:
        yield client, {"Authorization": f"Bearer {key}"}


def searches_answered() -> float:
    """The API's membership searches that every shard answered (a partial answer is an error)."""
    labels = {"operation": "customer_segments", "outcome": "ok"}
    return REGISTRY.get_sample_value("segmentation_elasticsearch_request_duration_seconds_count", labels) or 0.0


def answers_from_elasticsearch(api: tuple[TestClient, dict[str, str]], settings: Settings) -> dict[str, list[str]]:
    """Each customer's segment ids as the API answers them, every one searched in Elasticsearch."""
    client, headers = api
    unlink_matching(cache_redis(settings), f"{settings.index_prefix}:lookup:*")
    searched = searches_answered()
    answers = {}
    for customer_id in CUSTOMERS + ["nobody"]:
        response = client.get(f"/v1/customers/{customer_id}/segments", headers=headers)
        assert response.status_code == 200, response.text
        answers[customer_id] = sorted(s["segment_id"] for s in response.json()["segments"])
    assert searches_answered() - searched == len(answers)  # none from a cache
    return answers


def shard_copies(es: Elasticsearch, index: str) -> list[dict[str, str]]:
    return es.cat.shards(index=index, format="json", h="shard,prirep,state,node")  # type: ignore[return-value]


def master_name(es: Elasticsearch) -> str:
    [master] = es.cat.master(format="json")
    return str(master["node"])


def test_a_calculation_is_published_into_sized_shards_with_one_replica_and_served(on_cluster, published, api) -> None:
    index, built = published
    es = cluster_client(on_cluster)
    memberships = sum(len(members) for members in SEGMENTS.values())
    assert built["memberships"] == memberships == 72

    settings = es.indices.get_settings(index=index)[index]["settings"]["index"]
    assert (settings["number_of_shards"], settings["number_of_replicas"]) == ("2", "1")  # 72 / 40, rounded up
    assert settings.get("auto_expand_replicas", "false") == "false"
    assert es.indices.get_mapping(index=index)[index]["mappings"]["_meta"]["shards"] == 2
    assert set(es.indices.get_alias(name=type_alias(on_cluster.index_prefix, TYPE))) == {index}
    assert set(es.indices.get_alias(name=read_alias(on_cluster.index_prefix))) == {index}
    assert es.cluster.health(index=index, wait_for_status="green", timeout="30s")["status"] == "green"
    copies = shard_copies(es, index)
    assert sorted((c["shard"], c["prirep"]) for c in copies) == [("0", "p"), ("0", "r"), ("1", "p"), ("1", "r")]
    assert all(c["state"] == "STARTED" for c in copies)
    # A copy of each shard on each node.
    assert {c["node"] for c in copies if c["shard"] == "0"} == {c["node"] for c in copies if c["shard"] == "1"}

    assert answers_from_elasticsearch(api, on_cluster) == {c: expected(c) for c in CUSTOMERS + ["nobody"]}


def test_a_stopped_node_costs_no_lookup_and_started_again_the_cluster_goes_green_by_itself(
    on_cluster, published, api, elasticsearch_cluster: Settings
) -> None:
    index, _ = published
    es = cluster_client(on_cluster)
    assert es.cluster.health(index=index, wait_for_status="green", timeout="30s")["status"] == "green"
    master = master_name(es)
    holding_primaries = {c["node"] for c in shard_copies(es, index) if c["prirep"] == "p"}
    # The node stopped holds a primary, so some lookups must be answered by a replica: the master
    # when it holds one (the harder case: when it also held the only vote, no master is left).
    stopped_name = master if master in holding_primaries else next(iter(holding_primaries))
    nodes = cluster_nodes(TEST_ES_CLUSTER_PORT, layout_for(elasticsearch_cluster))  # the session's state folder
    [node] = [n for n in nodes if n.node_name == stopped_name]
    [survivor] = [n for n in nodes if n.node_name != stopped_name]

    stop_cluster_node(node)
    try:
        # The survivor alone answers (it may or may not have a master: with two nodes one holds the
        # only vote), and the API, which lists both nodes, answers every lookup from it: the shards
        # whose primary was on the stopped node, from their replica.
        assert answers_from_elasticsearch(api, on_cluster) == {c: expected(c) for c in CUSTOMERS + ["nobody"]}
    finally:
        started = time.monotonic()
        elasticsearch_cluster_up(elasticsearch_cluster, TEST_ES_CLUSTER_PORT)
    # No reroute: the node rejoins with its copies, a master is elected, and the replicas recover.
    left = max(1, round(GREEN_WITHIN_S - (time.monotonic() - started)))
    health = es.cluster.health(index=index, wait_for_status="green", timeout=f"{left}s")
    assert health["status"] == "green" and health["number_of_nodes"] == 2, health
    assert master_name(es) in {node.node_name, survivor.node_name}
    assert sorted((c["shard"], c["prirep"], c["state"]) for c in shard_copies(es, index)) == [
        ("0", "p", "STARTED"), ("0", "r", "STARTED"), ("1", "p", "STARTED"), ("1", "r", "STARTED")
    ]
    assert answers_from_elasticsearch(api, on_cluster) == {c: expected(c) for c in CUSTOMERS + ["nobody"]}
