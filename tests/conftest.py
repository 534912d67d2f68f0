"""Shared fixtures: real services, started once per session, and isolated namespaces on them."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from resources.settings import Settings
from tests import namespaces
from tests.elasticsearch_servers import TEST_ES_CLUSTER_PORT, cluster_client, remove_orphan_indices
from tests.redis_servers import TEST_CLUSTER_PORT, cache_redis


@pytest.fixture(scope="session")
def services() -> Settings:
    """Elasticsearch, PostgreSQL and Redis, as `segmentation services up` leaves them."""
    from devtools.local_services import services_up

    base = Settings()
    services_up(base)
    return base


@pytest.fixture(scope="session")
def make_namespace(services: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], Settings]]:
    """Settings with their own PostgreSQL schema, index prefix, lake and Dagster home, so tests never
    see each other's segments nor touch the demo's data; all of it is removed after the session,
    and what an interrupted session left behind is removed before it (tests/namespaces.py)."""
    from resources.config_store.database import upgrade_schema

    admin_engine = create_engine(services.database_url)
    es = Elasticsearch(services.elasticsearch_url)
    client = cache_redis(services)
    for run in namespaces.stale_runs(admin_engine):
        namespaces.remove(admin_engine, es, client, run)
    created: list[str] = []

    def make() -> Settings:
        run = uuid.uuid4().hex[:8]
        created.append(run)
        namespaces.create(admin_engine, run)
        database_url = (
            make_url(services.database_url)
            .update_query_dict({"options": f"-csearch_path={namespaces.schema_name(run)}"})
            .render_as_string(hide_password=False)
        )
        root: Path = tmp_path_factory.mktemp(f"ns-{run}")
        namespaced = services.model_copy(
            update={
                "database_url": database_url,
                "index_prefix": namespaces.index_prefix(run),
                "lake_uri": str(root / "lake"),
                "dagster_home": root / "dagster_home",
                # A test that expects a step to fail wants it at once; tests of retries ask for them.
                "step_max_retries": 0,
            }
        )
        upgrade_schema(database_url)
        return namespaced

    yield make

    for run in created:
        namespaces.remove(admin_engine, es, client, run)
    admin_engine.dispose()


@pytest.fixture(scope="module")
def settings(make_namespace: Callable[[], Settings]) -> Settings:
    return make_namespace()


@pytest.fixture(scope="session")
def redis_cluster(services: Settings) -> Iterator[Settings]:
    """The services, with a local Redis Cluster of three masters as the cache's and coordination's
    Redis (devtools/local_services/redis_cluster.py). What killed sessions left on it is removed
    first; each namespace's keys go with the module that used them (`settings_on_each_redis`)."""
    from devtools.local_services import redis_cluster_up

    cluster = services.model_copy(
        update={"redis_url": f"redis://127.0.0.1:{TEST_CLUSTER_PORT}/0", "redis_cluster": True, "lock_redis_url": None}
    )
    redis_cluster_up(cluster)
    client = cache_redis(cluster)
    admin_engine = create_engine(services.database_url)
    for run in namespaces.runs_with_keys_only(admin_engine, client):
        namespaces.remove_keys(client, run)
    admin_engine.dispose()
    yield cluster
    client.close()


@pytest.fixture(scope="session")
def elasticsearch_cluster(services: Settings) -> Iterator[Settings]:
    """The services, with the local two-node Elasticsearch cluster as the Elasticsearch, both nodes'
    URLs listed (devtools/local_services/elasticsearch_cluster.py); started only when a test asks
    for it. Indices that killed sessions left on it are removed first; a module removes its own."""
    from devtools.local_services import elasticsearch_cluster_up
    from devtools.local_services.elasticsearch_cluster import cluster_urls

    elasticsearch_cluster_up(services, TEST_ES_CLUSTER_PORT)
    cluster = services.model_copy(update={"elasticsearch_url": cluster_urls(TEST_ES_CLUSTER_PORT)})
    es = cluster_client(cluster)
    admin_engine = create_engine(services.database_url)
    remove_orphan_indices(es, admin_engine)
    admin_engine.dispose()
    yield cluster
    es.close()


@pytest.fixture(scope="module", params=["redis", "redis-cluster"])
def settings_on_each_redis(request: pytest.FixtureRequest, make_namespace: Callable[[], Settings]) -> Iterator[Settings]:
    """A namespace on the plain Redis, then one on the Redis Cluster: for the modules whose subject is
    what Redis holds (the lookup cache, the generation, the lock), which override `settings` with it.
    Each module then runs twice; the rest of the suite runs on the plain Redis only."""
    namespace = make_namespace()
    if request.param == "redis":
        yield namespace
        return
    cluster: Settings = request.getfixturevalue("redis_cluster")
    on_cluster = namespace.model_copy(update={"redis_url": cluster.redis_url, "redis_cluster": True, "lock_redis_url": None})
    yield on_cluster
    client = cache_redis(on_cluster)
    namespaces.remove_keys(client, namespaces.run_of(namespace.index_prefix))
    client.close()
