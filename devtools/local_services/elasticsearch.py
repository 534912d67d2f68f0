"""The local Elasticsearch node: its state, `up` and `down`; and the pieces every local node shares.

We start a single node, security off, bound to 127.0.0.1 on the configured URL's port, with its
data and logs under state_dir; `down` stops it only when its pidfile names a live node of ours.
The tests' two-node cluster (:mod:`.elasticsearch_cluster`) starts its nodes with the same pieces:
a :class:`LocalNode` says where a node keeps everything and how it finds its cluster.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from devtools.local_services.elasticsearch_install import (
    ES,
    ES_VERSION,
    choose_java_home,
    es_home,
    install_elasticsearch,
)
from devtools.local_services.layout import Layout
from devtools.local_services.processes import (
    managed_pid,
    pid_alive,
    poll_until,
    terminate,
)
from devtools.local_services.service import ServiceError, ServiceState
from devtools.local_services.system import (
    RunAs,
    check_reachable_by,
    chown_tree,
    ensure_dir,
    log_tail,
    service_user,
    write_if_changed,
)
from devtools.local_services.urls import (
    BIND_HOST,
    accepts_tcp,
    is_local_host,
    parse_elasticsearch_url,
    redact_url,
)
from resources.settings import Settings, elasticsearch_hosts

log = logging.getLogger(__name__)

ES_HEAP = "768m"
ES_START_TIMEOUT_S = 120.0
ES_STOP_TIMEOUT_S = 60.0
CLUSTER_NAME = "segmentation-local"
NODE_NAME = "segmentation-local-1"
STACK_TRACE_PREFIXES = ("\tat ", "\t... ")


@dataclass(frozen=True)
class Discovery:
    """How a node of a multi-node cluster finds the others: its own transport port, every node's
    transport port, and the nodes that bootstrap the cluster (only on its very first start)."""

    transport_port: int
    seed_ports: tuple[int, ...]
    initial_master_nodes: tuple[str, ...] = ()


@dataclass(frozen=True)
class LocalNode:
    """One node we start: its folders (data, logs, tmp, pidfile under `dir`), its config folder,
    its ports and its heap. `discovery` None: a single-node cluster."""

    label: str  # names the node in messages and states
    dir: Path
    conf_dir: Path  # ES_PATH_CONF
    http_port: int
    heap: str
    cluster_name: str = CLUSTER_NAME
    node_name: str = NODE_NAME
    discovery: Discovery | None = None

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def tmp(self) -> Path:
        return self.dir / "tmp"

    @property
    def pidfile(self) -> Path:
        return self.dir / "elasticsearch.pid"

    @property
    def launcher_log(self) -> Path:
        return self.logs / "launcher.log"

    @property
    def main_log(self) -> Path:
        main = self.logs / f"{self.cluster_name}.log"
        return main if main.exists() else self.launcher_log

    @property
    def url(self) -> str:
        return f"http://{BIND_HOST}:{self.http_port}"

    @property
    def marker(self) -> str:
        """What the command line of this node, and only of this one, contains: its own tmp folder
        (every local node runs from the same Elasticsearch home)."""
        return f"-Djava.io.tmpdir={self.tmp}"


def render_elasticsearch_yml(
    *,
    http_port: int,
    data_dir: Path,
    logs_dir: Path,
    geoip_downloader_setting: bool,
    cluster_name: str = CLUSTER_NAME,
    node_name: str = NODE_NAME,
    discovery: Discovery | None = None,
) -> str:
    settings: list[tuple[str, object]] = [
        ("cluster.name", cluster_name),
        ("node.name", node_name),
        ("network.host", BIND_HOST),
        ("http.port", http_port),
    ]
    if discovery is None:
        settings.append(("discovery.type", "single-node"))
    else:
        settings += [
            ("transport.port", discovery.transport_port),
            ("discovery.seed_hosts", [f"{BIND_HOST}:{port}" for port in discovery.seed_ports]),
        ]
        if discovery.initial_master_nodes:
            settings.append(("cluster.initial_master_nodes", list(discovery.initial_master_nodes)))
    settings += [
        ("xpack.security.enabled", False),
        ("path.data", str(data_dir)),
        ("path.logs", str(logs_dir)),
        ("cluster.routing.allocation.disk.threshold_enabled", False),
        # Nor may a nearly full shared disk stop merges: with under 5% of it free, Elasticsearch
        # 8.19 schedules none, and each publish's merge into one Lucene segment waits forever.
        ("indices.merge.disk.check_interval", "0"),
        ("action.destructive_requires_name", False),
    ]
    if geoip_downloader_setting:
        # Only builds that ship the ingest-geoip module know this setting; the others refuse to
        # boot on an unknown setting.
        settings.append(("ingest.geoip.downloader.enabled", False))
    lines = ["# Written by `segmentation services up`; rewritten on every start.\n"]
    # JSON scalars and lists are valid YAML and quote everything that needs it.
    lines += [f"{key}: {json.dumps(value)}\n" for key, value in settings]
    return "".join(lines)


# --- Talking to a node -------------------------------------------------------------------------


def http_get(url: str, timeout: float) -> tuple[int, str] | None:
    """(status, body) of a GET, or None when nothing answers."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, ValueError):
        return None


def health_url(url: str, wait_yellow: bool, timeout_s: int = 1, nodes: int = 1) -> str:
    """`_cluster/health` at `url`; `wait_yellow`: Elasticsearch answers once the cluster is yellow
    and has `nodes` nodes, or after `timeout_s`."""
    parsed = urllib.parse.urlsplit(url)
    without_credentials = parsed.netloc.rsplit("@", 1)[-1]
    base = urllib.parse.urlunsplit((parsed.scheme, without_credentials, parsed.path.rstrip("/"), "", ""))
    wait = f"wait_for_status=yellow&wait_for_nodes={nodes}&" if wait_yellow else ""
    return f"{base}/_cluster/health?{wait}timeout={timeout_s}s"


def describe_listener(url: str) -> tuple[bool, str]:
    """Whether something answers at the URL, and a short description of what."""
    target = parse_elasticsearch_url(url)
    if not accepts_tcp(target.host, target.port):
        return False, ""
    result = http_get(health_url(url, wait_yellow=False), timeout=5)
    if result is None:
        return True, "port open, no HTTP answer"
    status, body = result
    if status != 200:
        return True, f"answers HTTP {status}"
    try:
        health = json.loads(body)
    except ValueError:
        return True, "answers HTTP 200"
    return True, f"cluster {health.get('cluster_name')!r} is {health.get('status')}"


def node_pid(node: LocalNode) -> int | None:
    """The node's pid, when its pidfile names a live process that is this node."""
    return managed_pid(node.pidfile, node.marker)


def log_excerpt(path: Path) -> str:
    """The error lines of an Elasticsearch log (a Java stack trace buries them) and its last lines."""
    lines = log_tail(path, 400).splitlines()
    errors = [
        line[:500] for line in lines
        if not line.startswith(STACK_TRACE_PREFIXES) and re.search(r"ERROR|FATAL|Exception\b|[Ee]rror:", line)
    ][-8:]
    last = [
        line[:500] for line in lines[-12:]
        if line.strip() and not line.startswith(STACK_TRACE_PREFIXES) and line[:500] not in errors
    ]
    return "\n".join([*errors, *last])


def wait_ready(node: LocalNode, pid: int | None, timeout: float, nodes: int = 1) -> str:
    """Wait until the node says its cluster is yellow with `nodes` nodes; the health status, or a
    ServiceError quoting the node's log."""
    deadline = time.monotonic() + timeout

    def ask_health() -> tuple[int, str] | None:
        # Elasticsearch itself waits for yellow, up to 5s a request, so an answer needs no pause.
        wait_s = max(1, min(5, int(deadline - time.monotonic())))
        answer = http_get(health_url(node.url, True, wait_s, nodes), timeout=wait_s + 5)
        if answer is not None and answer[0] == 200:
            return answer
        if pid is not None and not pid_alive(pid, node.marker):
            raise ServiceError(
                f"{node.label}: the node (pid {pid}) exited while starting. Log {node.logs}; its tail:\n"
                f"{log_excerpt(node.main_log)}"
            )
        return answer

    answer = poll_until(ask_health, lambda a: a is not None and a[0] == 200, timeout=timeout,
                        pause=lambda a: 0.0 if a is not None else 1.0)
    if answer is not None and answer[0] == 200:
        try:
            return str(json.loads(answer[1]).get("status"))
        except ValueError:
            return "up"
    last = "no answer" if answer is None else f"HTTP {answer[0]}: {answer[1][:200]}"
    raise ServiceError(
        f"{node.label}: not ready (cluster health yellow, {nodes} node(s)) at {node.url} within {timeout:.0f}s "
        f"(last: {last}). Log {node.main_log}; its tail:\n{log_excerpt(node.main_log)}"
    )


def prepare_node(node: LocalNode, user: RunAs, home: Path) -> None:
    """Folders owned by the service user, and the node's elasticsearch.yml in its config folder."""
    for folder in (node.dir, node.data, node.logs, node.tmp, node.conf_dir):
        ensure_dir(folder, user)
    write_if_changed(
        node.conf_dir / "elasticsearch.yml",
        render_elasticsearch_yml(http_port=node.http_port, data_dir=node.data, logs_dir=node.logs,
                                 geoip_downloader_setting=(home / "modules" / "ingest-geoip").is_dir(),
                                 cluster_name=node.cluster_name, node_name=node.node_name,
                                 discovery=node.discovery),
        user,
    )


def launch(node: LocalNode, home: Path, user: RunAs, java_home: Path) -> None:
    """Start the node as a daemon (`-d` returns once it has started or failed)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(node.dir),
        "ES_JAVA_HOME": str(java_home),
        "ES_JAVA_OPTS": f"-Xms{node.heap} -Xmx{node.heap}",
        "ES_PATH_CONF": str(node.conf_dir),
        "ES_TMPDIR": str(node.tmp),
        "CLI_JAVA_OPTS": f"-Djava.io.tmpdir={node.tmp}",
    }
    # Through `env`, after runuser, which sets HOME to the service user's (nonexistent) home.
    argv = user.wrap(["env", *(f"{key}={value}" for key, value in env.items()),
                      str(home / "bin" / "elasticsearch"), "-d", "-p", str(node.pidfile)])
    node.pidfile.unlink(missing_ok=True)  # so that a stale pid is never taken for the new node
    # The launcher's output goes to a file so that the daemon cannot hold a pipe of ours open.
    with node.launcher_log.open("ab") as out:
        try:
            rc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                cwd=node.logs, timeout=ES_START_TIMEOUT_S, check=False).returncode
        except subprocess.TimeoutExpired:
            return  # still starting: the wait for health decides
    if rc != 0:
        raise ServiceError(
            f"{node.label}: failed to start (launcher exit code {rc}). Log {node.main_log}; its tail:\n"
            f"{log_excerpt(node.launcher_log)}"
        )


def stop_node(node: LocalNode) -> bool:
    """Stops the node if its pidfile names it; whether it was running."""
    pid = node_pid(node)
    if pid is None:
        return False
    log.info("stopping %s (pid %d)", node.label, pid)
    terminate(pid, node.marker, ES_STOP_TIMEOUT_S, node.label)
    node.pidfile.unlink(missing_ok=True)
    return True


def installed_home(layout: Layout, user: RunAs) -> Path:
    """The distribution, installed where missing and readable by the service user."""
    install_elasticsearch(layout)
    home = es_home(layout)
    if user.via_runuser and (home / "config").stat().st_uid != user.uid:
        chown_tree(home, user)  # the single node writes its keystore into config/
    return home


# --- The single node: state, up, down ----------------------------------------------------------


def single_node(settings: Settings, layout: Layout) -> LocalNode:
    """The one node `services up` starts, on the port of the configured URL (the first, if several);
    its config folder is the distribution's own."""
    port = parse_elasticsearch_url(elasticsearch_hosts(settings.elasticsearch_url)[0]).port
    return LocalNode(ES, layout.es_dir, es_home(layout) / "config", port, ES_HEAP)


def elasticsearch_state(settings: Settings, layout: Layout) -> ServiceState:
    node = single_node(settings, layout)
    urls = elasticsearch_hosts(settings.elasticsearch_url)
    answering = [(url, what) for url in urls for answers, what in [describe_listener(url)] if answers]
    pid = node_pid(node)
    shown = redact_url(settings.elasticsearch_url)
    if pid is not None:
        health = answering[0][1] if answering else "not answering yet"
        return ServiceState(ES, shown, bool(answering), True, f"ours, pid {pid}, {health}; logs {node.logs}")
    if answering:
        what = "; ".join(f"{redact_url(url)}: {what}" for url, what in answering) if len(urls) > 1 else answering[0][1]
        return ServiceState(ES, shown, True, False, f"external ({what}); left alone")
    return ServiceState(ES, shown, False, False, "not running")


def elasticsearch_up(settings: Settings, layout: Layout) -> ServiceState:
    state = elasticsearch_state(settings, layout)
    node = single_node(settings, layout)
    if state.managed:  # ours: ready, or still starting (perhaps from another `up`)
        wait_ready(node, node_pid(node), ES_START_TIMEOUT_S)
        return elasticsearch_state(settings, layout)
    if state.running:
        return state
    _check_startable(settings.elasticsearch_url)
    user = service_user(create=True)
    check_reachable_by(user, layout.root)
    java_home, java_major = choose_java_home()
    home = installed_home(layout, user)
    prepare_node(node, user, home)
    log.info("starting %s %s on %s:%d (Java %d at %s)", ES, ES_VERSION, BIND_HOST, node.http_port, java_major, java_home)
    started = time.monotonic()
    launch(node, home, user, java_home)
    remaining = max(5.0, ES_START_TIMEOUT_S - (time.monotonic() - started))
    health = wait_ready(node, node_pid(node), remaining)
    log.info("%s is %s after %.1fs", ES, health, time.monotonic() - started)
    return elasticsearch_state(settings, layout)


def _check_startable(url: str) -> None:
    """Raises unless a node may be started for `url`, at which nothing answers."""
    if len(elasticsearch_hosts(url)) > 1:
        raise ServiceError(
            f"{ES}: nothing answers at {redact_url(url)}; `services up` starts one local node, so give "
            "SEGMENTATION_ELASTICSEARCH_URL one URL, or start the nodes it lists yourself"
        )
    target = parse_elasticsearch_url(url)
    if not is_local_host(target.host):
        raise ServiceError(
            f"{ES}: nothing answers at {redact_url(url)}, and only a local node (127.0.0.1) can be started"
        )
    if target.scheme != "http":
        raise ServiceError(
            f"{ES}: nothing answers at {redact_url(url)}; the local node speaks plain http, "
            f"set SEGMENTATION_ELASTICSEARCH_URL=http://127.0.0.1:{target.port}"
        )


def elasticsearch_down(settings: Settings, layout: Layout) -> ServiceState:
    stop_node(single_node(settings, layout))
    return elasticsearch_state(settings, layout)
