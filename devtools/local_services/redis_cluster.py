"""A local Redis Cluster: three masters, no replicas, for `SEGMENTATION_REDIS_CLUSTER=true`.

When the settings say that a Redis URL names a node of a cluster, `services up` starts three Debian
`redis-server`s in cluster mode, on the URL's port and the two after it (each with its cluster bus
on the port + 10000), and joins them with `redis-cli --cluster create ... --cluster-replicas 0`,
which hands the 16,384 slots out in three ranges. Each node keeps its pidfile, log and `nodes.conf`
(its id and its slots, so a restarted node rejoins as it was) under `state_dir/redis-cluster/<port>/`;
like the single server, no snapshots. The tests start one such cluster of their own (tests/conftest.py).

Idempotent: a cluster that answers with every slot served is used as it is; nodes that answer
without having been started here are someone else's, never reconfigured. `services down` stops
every node started here, whatever the settings say now.
"""

from __future__ import annotations

import logging
import os
import urllib.parse

from devtools.local_services.layout import Layout
from devtools.local_services.processes import poll_until
from devtools.local_services.redis import (
    RedisInstance,
    instance_down,
    instance_state,
    instance_up,
)
from devtools.local_services.service import ServiceError, ServiceState
from devtools.local_services.system import ensure_dir, run_checked
from devtools.local_services.urls import BIND_HOST, parse_redis_url, redact_url

log = logging.getLogger(__name__)

CLUSTER_MASTERS = 3
CLUSTER_SLOTS = 16_384
CLUSTER_READY_TIMEOUT_S = 30.0
CREATE_TIMEOUT_S = 60


def node_url(url: str, port: int) -> str:
    """The same URL (user, password, path) for the node on `port`."""
    parsed = urllib.parse.urlsplit(url)
    userinfo = parsed.netloc.rpartition("@")[0]
    host = parsed.hostname or BIND_HOST
    host = f"[{host}]" if ":" in host else host
    return urllib.parse.urlunsplit(parsed._replace(netloc=f"{userinfo + '@' if userinfo else ''}{host}:{port}"))


def cluster_nodes(url: str, layout: Layout, *, label: str, evicting: bool) -> list[RedisInstance]:
    """The three nodes of the cluster that `url` names: its port and the two after it."""
    first = parse_redis_url(url).port
    return [
        RedisInstance(f"{label} :{port}", node_url(url, port), layout.redis_cluster_dir / str(port), evicting, cluster=True)
        for port in range(first, first + CLUSTER_MASTERS)
    ]


def _cluster_info(url: str) -> dict[str, str] | None:
    """The node's `CLUSTER INFO`, or None when it does not answer it."""
    import redis  # the client library; imported late to keep `status` cheap

    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        info = client.cluster("INFO")  # parsed by redis-py: field -> value, as text
    except redis.RedisError:
        return None
    finally:
        client.close()
    return {str(field): str(value) for field, value in info.items()}


def _serves_every_slot(info: dict[str, str] | None) -> bool:
    return info is not None and info.get("cluster_state") == "ok" and info.get("cluster_slots_ok") == str(CLUSTER_SLOTS)


def cluster_state(url: str, layout: Layout, *, label: str, evicting: bool) -> ServiceState:
    nodes = cluster_nodes(url, layout, label=label, evicting=evicting)
    states = [instance_state(node) for node in nodes]
    managed = all(state.managed for state in states)
    ports = ", ".join(str(parse_redis_url(node.url).port) for node in nodes)
    if not all(state.running for state in states):
        down = "; ".join(f"{state.name}: {state.detail}" for state in states if not state.running)
        return ServiceState(label, redact_url(url), False, any(s.managed for s in states), f"nodes {ports}; {down}")
    infos = [_cluster_info(node.url) for node in nodes]
    if not all(_serves_every_slot(info) for info in infos):
        first = infos[0] or {}
        detail = (
            f"nodes {ports} answer, but the cluster is not serving every slot (cluster_state "
            f"{first.get('cluster_state', '?')}, {first.get('cluster_known_nodes', '?')} nodes known)"
        )
        return ServiceState(label, redact_url(url), False, managed, detail)
    owner = f"ours, data {layout.redis_cluster_dir}/<port>" if managed else "external; left alone"
    return ServiceState(label, redact_url(url), True, managed, f"{owner}; {CLUSTER_MASTERS} masters on {ports}, every slot served")


def cluster_up(url: str, layout: Layout, *, label: str, evicting: bool) -> ServiceState:
    """Starts the nodes that are not running, joins them into a cluster if they never were, and waits
    until every slot is served."""
    nodes = cluster_nodes(url, layout, label=label, evicting=evicting)
    ensure_dir(layout.redis_cluster_dir, None)  # ours; each node's folder is the service user's
    states = [instance_up(node) for node in nodes]
    infos = [_cluster_info(node.url) for node in nodes]
    if any(info is None for info in infos):
        raise ServiceError(f"{label}: a node at {redact_url(url)} or after it does not answer CLUSTER INFO: not in cluster mode")
    fresh = all(info.get("cluster_known_nodes") == "1" and info.get("cluster_slots_assigned") == "0" for info in infos)  # type: ignore[union-attr]
    if fresh:
        if not all(state.managed for state in states):
            raise ServiceError(f"{label}: nodes at {redact_url(url)} answer but were not started here; they are left unjoined")
        _create(nodes, label)
    ready = poll_until(
        lambda: all(_serves_every_slot(_cluster_info(node.url)) for node in nodes), bool, timeout=CLUSTER_READY_TIMEOUT_S, pause=0.2
    )
    if not ready:
        raise ServiceError(
            f"{label}: the nodes at {redact_url(url)} and after it do not serve every slot within "
            f"{CLUSTER_READY_TIMEOUT_S:.0f}s. A cluster left half-made: `segmentation services down`, remove "
            f"{layout.redis_cluster_dir}, and `up` again. Logs: {', '.join(str(node.log) for node in nodes)}"
        )
    return cluster_state(url, layout, label=label, evicting=evicting)


def _create(nodes: list[RedisInstance], label: str) -> None:
    target = parse_redis_url(nodes[0].url)
    argv = ["redis-cli", "--cluster", "create", *(f"{target.host}:{parse_redis_url(n.url).port}" for n in nodes)]
    argv += ["--cluster-replicas", "0", "--cluster-yes"]
    env = dict(os.environ)
    if target.password:  # from the environment: never on a command line that `ps` shows
        env["REDISCLI_AUTH"] = target.password
    if target.username and target.username != "default":
        argv += ["--user", target.username]
    log.info("joining %s into a cluster of %d masters", ", ".join(str(parse_redis_url(n.url).port) for n in nodes), len(nodes))
    run_checked(argv, what="create the cluster (redis-cli --cluster create)", service=label, log_hint=nodes[0].log,
                env=env, timeout=CREATE_TIMEOUT_S)


def local_cluster_nodes(layout: Layout) -> list[RedisInstance]:
    """Every cluster node that was ever started under this state folder (one folder per port)."""
    if not layout.redis_cluster_dir.is_dir():
        return []
    return [
        RedisInstance(f"Redis Cluster :{folder.name}", f"redis://{BIND_HOST}:{folder.name}", folder, evicting=True, cluster=True)
        for folder in sorted(layout.redis_cluster_dir.iterdir())
        if folder.is_dir() and folder.name.isdigit()
    ]


def local_clusters_down(layout: Layout) -> ServiceState | None:
    """Stops every cluster node started under this state folder; None when there were none."""
    stopped = [node for node in local_cluster_nodes(layout) if instance_state(node).managed]
    for node in stopped:
        instance_down(node)
    if not stopped:
        return None
    ports = ", ".join(node.dir.name for node in stopped)
    return ServiceState("Redis Cluster", f"redis://{BIND_HOST}:{stopped[0].dir.name}", False, True, f"stopped the nodes on {ports}")
