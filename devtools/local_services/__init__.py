"""`segmentation services up|down|status`: the local Elasticsearch, PostgreSQL and Redis.

* Idempotent. Whatever already answers at the configured URL (``elasticsearch_url``,
  ``database_url``, ``redis_url``) is used as it is, reported as *external* and never stopped.
  ``down`` stops only what we started, recognised by a pidfile under ``settings.state_dir``.
* What we start binds to 127.0.0.1 on the port of the configured URL. Data and logs live under
  ``state_dir`` (see :mod:`.layout`); downloads are cached in ``state_dir/downloads`` (the Maven
  download itself lands in ``~/.m2``).
* Elasticsearch and PostgreSQL refuse to run as root, so when we are root every server runs as an
  unprivileged system user (``segsvc``, created when missing; override with
  ``SEGMENTATION_SERVICES_USER``) through ``runuser``. When we are not root, they run as ourselves.
* Every failure is a :class:`ServiceError` whose message names the service, what failed and
  where its log is. URLs in messages and states have their password redacted.
* ``SEGMENTATION_REDIS_CLUSTER=true`` (``SEGMENTATION_LOCK_REDIS_CLUSTER`` for coordination): the
  Redis at the URL is a local cluster of three masters on its port and the two after it
  (:mod:`.redis_cluster`). ``down`` stops every cluster node started under ``state_dir``.
* The tests' Elasticsearch cluster of two nodes (:mod:`.elasticsearch_cluster`) is started only by
  :func:`elasticsearch_cluster_up`; ``down`` stops it too.

The three public functions log progress (``logging``, loggers under ``devtools.local_services``)
and print nothing; the caller renders the returned :class:`ServiceState` list.
"""

from __future__ import annotations

from collections.abc import Callable

from devtools.local_services import elasticsearch_cluster
from devtools.local_services.elasticsearch import (
    elasticsearch_down,
    elasticsearch_state,
    elasticsearch_up,
)
from devtools.local_services.layout import Layout, layout_for, state_lock
from devtools.local_services.postgres import postgres_down, postgres_state, postgres_up
from devtools.local_services.redis import (
    COORDINATION_REDIS,
    REDIS,
    coordination_down,
    coordination_instance,
    coordination_state,
    coordination_up,
    redis_down,
    redis_state,
    redis_up,
)
from devtools.local_services.redis_cluster import cluster_state, cluster_up, local_clusters_down
from devtools.local_services.service import ServiceError, ServiceState
from resources.settings import Settings

__all__ = [
    "ServiceError",
    "ServiceState",
    "elasticsearch_cluster_up",
    "redis_cluster_up",
    "services_down",
    "services_status",
    "services_up",
]

Step = Callable[[Settings, Layout], ServiceState | None]  # None: nothing to manage for these settings
ClusterStep = Callable[..., ServiceState]


def _cache_redis(single: Step, cluster: ClusterStep) -> Step:
    """The cache's Redis: one server, or a local cluster when `redis_cluster` says so."""

    def step(settings: Settings, layout: Layout) -> ServiceState | None:
        if settings.redis_cluster:
            return cluster(settings.redis_url, layout, label=f"{REDIS} Cluster", evicting=True)
        return single(settings, layout)

    return step


def _coordination_redis(single: Step, cluster: ClusterStep) -> Step:
    """The coordination Redis, when it has a URL of its own: one server, or a local cluster."""

    def step(settings: Settings, layout: Layout) -> ServiceState | None:
        if settings.coordination_redis_cluster and coordination_instance(settings, layout) is not None:
            label = COORDINATION_REDIS.replace(REDIS, f"{REDIS} Cluster")
            return cluster(settings.coordination_redis_url, layout, label=label, evicting=False)
        return single(settings, layout)

    return step


def _local_clusters_down(settings: Settings, layout: Layout) -> ServiceState | None:
    return local_clusters_down(layout)


def _local_elasticsearch_clusters_down(settings: Settings, layout: Layout) -> ServiceState | None:
    return elasticsearch_cluster.local_clusters_down(layout)


def _run_each(steps: list[Step], settings: Settings, layout: Layout) -> list[ServiceState]:
    """Every step runs even when an earlier one fails; their errors are raised together."""
    errors: list[str] = []
    states: list[ServiceState] = []
    for step in steps:
        try:
            state = step(settings, layout)
            if state is not None:
                states.append(state)
        except ServiceError as exc:
            errors.append(str(exc))
    if errors:
        raise ServiceError("\n".join(errors))
    return states


def services_up(settings: Settings) -> list[ServiceState]:
    """Install where missing and start Elasticsearch, PostgreSQL and Redis; reuse what already answers."""
    layout = layout_for(settings)
    with state_lock(layout):
        # The quick ones first, so that a slow or failing Elasticsearch still leaves them usable.
        postgres, redis, *coordination, elasticsearch = _run_each(
            [
                postgres_up,
                _cache_redis(redis_up, cluster_up),
                _coordination_redis(coordination_up, cluster_up),
                elasticsearch_up,
            ],
            settings,
            layout,
        )
    return [elasticsearch, postgres, redis, *coordination]


def redis_cluster_up(settings: Settings) -> ServiceState:
    """Only the local Redis Cluster that `settings.redis_url` names (for the tests)."""
    layout = layout_for(settings)
    with state_lock(layout):
        return cluster_up(settings.redis_url, layout, label=f"{REDIS} Cluster", evicting=True)


def elasticsearch_cluster_up(settings: Settings, first_port: int) -> ServiceState:
    """Only the local two-node Elasticsearch cluster on `first_port` and the port after it (for the tests)."""
    layout = layout_for(settings)
    with state_lock(layout):
        return elasticsearch_cluster.cluster_up(first_port, layout)


def services_down(settings: Settings) -> list[ServiceState]:
    """Stop what `services_up` started (pidfiles under state_dir); leave everything else alone."""
    layout = layout_for(settings)
    with state_lock(layout):
        # Cluster nodes are found by their folders: a cluster the settings no longer name is stopped too.
        steps = [
            elasticsearch_down,
            _local_elasticsearch_clusters_down,
            postgres_down,
            redis_down,
            coordination_down,
            _local_clusters_down,
        ]
        return _run_each(steps, settings, layout)


def services_status(settings: Settings) -> list[ServiceState]:
    """Reachability of each configured URL, and whether we started what answers there."""
    layout = layout_for(settings)
    steps = [
        elasticsearch_state,
        postgres_state,
        _cache_redis(redis_state, cluster_state),
        _coordination_redis(coordination_state, cluster_state),
    ]
    return _run_each(steps, settings, layout)
