"""A local Elasticsearch cluster of two nodes, for the tests of shards, replicas and a lost node.

`cluster_up(first_port, layout)` starts two nodes of the installed distribution on
HTTP ports `first_port` and the one after it, their transport ports `TRANSPORT_OFFSET` above, with
small heaps. Both are master-eligible data nodes, security off, with the single node's disk and
merge settings (`render_elasticsearch_yml`). Each node has its own config folder (ES_PATH_CONF: a
copy of the distribution's, and its elasticsearch.yml) and its data and logs, all under
`state_dir/elasticsearch-cluster/<http port>/`. The nodes bootstrap the cluster on their first
start (`cluster.initial_master_nodes`, written only while their data folders are empty); a node
started again rejoins it with its data.

Idempotent: nodes of ours that run are kept, the others started. A cluster on those ports that
was not started here (another checkout's) is used as it is when both nodes answer. `services down`
stops every node started under this state folder, whatever the ports.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

from devtools.local_services.elasticsearch import (
    Discovery,
    LocalNode,
    describe_listener,
    health_url,
    http_get,
    installed_home,
    launch,
    node_pid,
    prepare_node,
    stop_node,
    wait_ready,
)
from devtools.local_services.elasticsearch_install import ES, choose_java_home, es_home
from devtools.local_services.layout import Layout
from devtools.local_services.processes import poll_until
from devtools.local_services.service import ServiceError, ServiceState
from devtools.local_services.system import RunAs, check_reachable_by, chown_tree, ensure_dir, service_user
from devtools.local_services.urls import BIND_HOST

log = logging.getLogger(__name__)

ES_CLUSTER = f"{ES} cluster"
CLUSTER_NODES = 2
CLUSTER_HEAP = "256m"  # the tests' indices are small; two nodes of 256 MB start in ~30 s here
CLUSTER_NAME = "segmentation-local-cluster"
TRANSPORT_OFFSET = 100  # a node's transport port: its HTTP port + 100
CLUSTER_START_TIMEOUT_S = 180.0
# The distribution's config files each node does not share: its own settings and keystore.
NODE_OWN_CONFIG = ("elasticsearch.yml", "elasticsearch.keystore", "*.tmp")


def node_name(http_port: int) -> str:
    return f"segmentation-cluster-{http_port}"


def cluster_urls(first_port: int) -> str:
    """Every node's URL, comma-separated, as `SEGMENTATION_ELASTICSEARCH_URL` lists several nodes."""
    return ",".join(f"http://{BIND_HOST}:{port}" for port in range(first_port, first_port + CLUSTER_NODES))


def _node(layout: Layout, http_port: int, ports: list[int], bootstrap: bool) -> LocalNode:
    folder = layout.es_cluster_dir / str(http_port)
    discovery = Discovery(
        transport_port=http_port + TRANSPORT_OFFSET,
        seed_ports=tuple(port + TRANSPORT_OFFSET for port in ports),
        initial_master_nodes=tuple(node_name(port) for port in ports) if bootstrap else (),
    )
    return LocalNode(f"{ES_CLUSTER} node :{http_port}", folder, folder / "config", http_port, CLUSTER_HEAP,
                     cluster_name=CLUSTER_NAME, node_name=node_name(http_port), discovery=discovery)


def cluster_nodes(first_port: int, layout: Layout) -> list[LocalNode]:
    """The nodes of the cluster on `first_port` and the port after it."""
    ports = list(range(first_port, first_port + CLUSTER_NODES))
    # Bootstrapping is for a cluster none of whose nodes has data yet; later starts rejoin it.
    data = [layout.es_cluster_dir / str(port) / "data" for port in ports]
    bootstrap = not any(folder.is_dir() and any(folder.iterdir()) for folder in data)
    return [_node(layout, port, ports, bootstrap) for port in ports]


def _health(node: LocalNode) -> dict[str, object] | None:
    answer = http_get(health_url(node.url, wait_yellow=False), timeout=5)
    if answer is None or answer[0] != 200:
        return None
    try:
        return dict(json.loads(answer[1]))
    except ValueError:
        return None


def cluster_state(first_port: int, layout: Layout) -> ServiceState:
    nodes = cluster_nodes(first_port, layout)
    url = cluster_urls(first_port)
    pids = [node_pid(node) for node in nodes]
    answering = [describe_listener(node.url)[0] for node in nodes]
    managed = all(pid is not None for pid in pids)
    ports = ", ".join(str(node.http_port) for node in nodes)
    if not all(answering):
        down = ", ".join(str(n.http_port) for n, answers in zip(nodes, answering) if not answers)
        detail = f"nodes {ports}; not answering: {down}"
        return ServiceState(ES_CLUSTER, url, False, any(pid is not None for pid in pids), detail)
    health = _health(nodes[0]) or {}
    joined = health.get("number_of_nodes") == CLUSTER_NODES
    owner = f"ours, logs {layout.es_cluster_dir}/<port>/logs" if managed else "external; left alone"
    detail = f"{owner}; nodes {ports}: {health.get('number_of_nodes', '?')} joined, cluster {health.get('status', '?')}"
    return ServiceState(ES_CLUSTER, url, joined, managed, detail)


def cluster_up(first_port: int, layout: Layout) -> ServiceState:
    """Starts the nodes that are not running, and waits until both have joined (yellow at least)."""
    nodes = cluster_nodes(first_port, layout)
    ours = [node_pid(node) is not None for node in nodes]
    foreign = [n for n, mine in zip(nodes, ours) if not mine and describe_listener(n.url)[0]]
    if foreign and len(foreign) < len(nodes):
        taken = ", ".join(str(n.http_port) for n in foreign)
        raise ServiceError(f"{ES_CLUSTER}: port {taken} answers, but not with a node started here; stop it or pick other ports")
    if foreign:  # another checkout's cluster: used as it is
        return cluster_state(first_port, layout)
    missing = [n for n, mine in zip(nodes, ours) if not mine]
    started = time.monotonic()
    if missing:
        user = service_user(create=True)
        check_reachable_by(user, layout.root)
        java_home, _ = choose_java_home()
        home = installed_home(layout, user)
        ensure_dir(layout.es_cluster_dir, None)  # ours; each node's folder is the service user's
        for node in missing:
            _copy_distribution_config(node, user, layout)
            prepare_node(node, user, home)
        log.info("starting %s nodes %s", ES_CLUSTER, ", ".join(str(n.http_port) for n in missing))
        # At once: a node's launcher returns when it has joined a cluster, which needs the other.
        with ThreadPoolExecutor(len(missing)) as pool:
            list(pool.map(lambda node: launch(node, home, user, java_home), missing))
    for node in nodes:
        remaining = max(5.0, CLUSTER_START_TIMEOUT_S - (time.monotonic() - started))
        wait_ready(node, node_pid(node), remaining, nodes=CLUSTER_NODES)
    if missing:
        log.info("%s is up after %.1fs", ES_CLUSTER, time.monotonic() - started)
    return cluster_state(first_port, layout)


def _copy_distribution_config(node: LocalNode, user: RunAs, layout: Layout) -> None:
    """The distribution's config files (JVM options, logging) into the node's own config folder."""
    if (node.conf_dir / "jvm.options").exists():
        return
    shutil.copytree(es_home(layout) / "config", node.conf_dir, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(*NODE_OWN_CONFIG))
    if user.via_runuser:
        chown_tree(node.conf_dir, user)


def stop_cluster_node(node: LocalNode) -> None:
    """Stops one node (a test's lost node), and waits until its port is closed, so that
    `cluster_up` then starts it again rather than taking it for someone else's."""
    if not stop_node(node):
        raise ServiceError(f"{node.label}: not running here, nothing to stop")
    if poll_until(lambda: describe_listener(node.url)[0], lambda answers: not answers, timeout=60.0, pause=0.5):
        raise ServiceError(f"{node.label}: its process is gone, yet port {node.http_port} still answers after 60 s")


def local_clusters_down(layout: Layout) -> ServiceState | None:
    """Stops every cluster node started under this state folder; None when none was running."""
    if not layout.es_cluster_dir.is_dir():
        return None
    ports = sorted(int(folder.name) for folder in layout.es_cluster_dir.iterdir() if folder.name.isdigit())
    stopped = [port for port in ports if stop_node(_node(layout, port, [port], bootstrap=False))]
    if not stopped:
        return None
    first = stopped[0]
    return ServiceState(ES_CLUSTER, f"http://{BIND_HOST}:{first}", False, True,
                        f"stopped the nodes on {', '.join(map(str, stopped))}")
