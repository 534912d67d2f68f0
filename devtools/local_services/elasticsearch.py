"""The local Elasticsearch node: its state, `up` and `down`.

We start a single node, security off, bound to 127.0.0.1 on the configured URL's port, with its
data and logs under state_dir; `down` stops it only when its pidfile names a live node of ours.
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
from resources.settings import Settings

log = logging.getLogger(__name__)

ES_HEAP = "768m"
ES_START_TIMEOUT_S = 120.0
ES_STOP_TIMEOUT_S = 60.0
CLUSTER_NAME = "segmentation-local"
NODE_NAME = "segmentation-local-1"
STACK_TRACE_PREFIXES = ("\tat ", "\t... ")


def render_elasticsearch_yml(
    *,
    http_port: int,
    data_dir: Path,
    logs_dir: Path,
    geoip_downloader_setting: bool,
    cluster_name: str = CLUSTER_NAME,
    node_name: str = NODE_NAME,
) -> str:
    settings: list[tuple[str, object]] = [
        ("cluster.name", cluster_name),
        ("node.name", node_name),
        ("network.host", BIND_HOST),
        ("http.port", http_port),
        ("discovery.type", "single-node"),
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
    # JSON scalars are valid YAML scalars and quote everything that needs it.
    lines += [f"{key}: {json.dumps(value)}\n" for key, value in settings]
    return "".join(lines)


# --- Talking to the node -----------------------------------------------------------------------


def _http_get(url: str, timeout: float) -> tuple[int, str] | None:
    """(status, body) of a GET, or None when nothing answers."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _health_url(url: str, wait_yellow: bool, timeout_s: int = 1) -> str:
    parsed = urllib.parse.urlsplit(url)
    without_credentials = parsed.netloc.rsplit("@", 1)[-1]
    base = urllib.parse.urlunsplit((parsed.scheme, without_credentials, parsed.path.rstrip("/"), "", ""))
    query = f"wait_for_status=yellow&timeout={timeout_s}s" if wait_yellow else f"timeout={timeout_s}s"
    return f"{base}/_cluster/health?{query}"


def _describe_listener(url: str) -> tuple[bool, str]:
    """Whether something answers at the URL, and a short description of what."""
    target = parse_elasticsearch_url(url)
    if not accepts_tcp(target.host, target.port):
        return False, ""
    result = _http_get(_health_url(url, wait_yellow=False), timeout=5)
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


def _marker(layout: Layout) -> str:
    """What the command line of our node, and only of ours, contains."""
    return f"-Des.path.home={es_home(layout)}"


def _our_pid(layout: Layout) -> int | None:
    return managed_pid(layout.es_pidfile, _marker(layout))


def _main_log(layout: Layout) -> Path:
    main = layout.es_logs / f"{CLUSTER_NAME}.log"
    return main if main.exists() else layout.es_launcher_log


def _log_excerpt(path: Path) -> str:
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


# --- State, up, down ---------------------------------------------------------------------------


def elasticsearch_state(settings: Settings, layout: Layout) -> ServiceState:
    url = settings.elasticsearch_url
    answers, what = _describe_listener(url)
    pid = _our_pid(layout)
    shown = redact_url(url)
    if pid is not None:
        health = what if answers else "not answering yet"
        return ServiceState(ES, shown, answers, True, f"ours, pid {pid}, {health}; logs {layout.es_logs}")
    if answers:
        return ServiceState(ES, shown, True, False, f"external ({what}); left alone")
    return ServiceState(ES, shown, False, False, "not running")


def _wait_ready(settings: Settings, layout: Layout, pid: int | None, timeout: float) -> str:
    """Wait for cluster health yellow; the health status, or a ServiceError quoting the log."""
    url = settings.elasticsearch_url
    deadline = time.monotonic() + timeout

    def ask_health() -> tuple[int, str] | None:
        # Elasticsearch itself waits for yellow, up to 5s a request, so an answer needs no pause.
        wait_s = max(1, min(5, int(deadline - time.monotonic())))
        answer = _http_get(_health_url(url, True, wait_s), timeout=wait_s + 5)
        if answer is not None and answer[0] == 200:
            return answer
        if pid is not None and not pid_alive(pid, _marker(layout)):
            raise ServiceError(
                f"{ES}: the node (pid {pid}) exited while starting. Log {layout.es_logs}; its tail:\n"
                f"{_log_excerpt(_main_log(layout))}"
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
        f"{ES}: not ready (cluster health yellow) at {redact_url(url)} within {timeout:.0f}s (last: {last}). "
        f"Log {_main_log(layout)}; its tail:\n{_log_excerpt(_main_log(layout))}"
    )


def elasticsearch_up(settings: Settings, layout: Layout) -> ServiceState:
    state = elasticsearch_state(settings, layout)
    if state.managed:  # ours: ready, or still starting (perhaps from another `up`)
        _wait_ready(settings, layout, _our_pid(layout), ES_START_TIMEOUT_S)
        return elasticsearch_state(settings, layout)
    if state.running:
        return state
    port = _startable_port(settings.elasticsearch_url)
    user = service_user(create=True)
    check_reachable_by(user, layout.root)
    java_home, java_major = choose_java_home()
    install_elasticsearch(layout)
    _prepare_node(layout, user, port)
    log.info("starting %s %s on %s:%d (Java %d at %s)", ES, ES_VERSION, BIND_HOST, port, java_major, java_home)
    started = time.monotonic()
    _launch(layout, user, java_home)
    remaining = max(5.0, ES_START_TIMEOUT_S - (time.monotonic() - started))
    health = _wait_ready(settings, layout, _our_pid(layout), remaining)
    log.info("%s is %s after %.1fs", ES, health, time.monotonic() - started)
    return elasticsearch_state(settings, layout)


def _startable_port(url: str) -> int:
    """The port to start a node on, when nothing answers at `url` and one may be started there."""
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
    return target.port


def _prepare_node(layout: Layout, user: RunAs, port: int) -> None:
    """Folders owned by the service user, and elasticsearch.yml for this port."""
    home = es_home(layout)
    for folder in (layout.es_dir, layout.es_data, layout.es_logs, layout.es_tmp):
        ensure_dir(folder, user)
    if user.via_runuser and (home / "config").stat().st_uid != user.uid:
        chown_tree(home, user)  # ES writes its keystore into config/
    geoip = (home / "modules" / "ingest-geoip").is_dir()
    write_if_changed(
        home / "config" / "elasticsearch.yml",
        render_elasticsearch_yml(http_port=port, data_dir=layout.es_data, logs_dir=layout.es_logs,
                                 geoip_downloader_setting=geoip),
        user,
    )


def _launch(layout: Layout, user: RunAs, java_home: Path) -> None:
    """Start the node as a daemon (`-d` returns once it has started or failed)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(layout.es_dir),
        "ES_JAVA_HOME": str(java_home),
        "ES_JAVA_OPTS": f"-Xms{ES_HEAP} -Xmx{ES_HEAP}",
        "ES_TMPDIR": str(layout.es_tmp),
        "CLI_JAVA_OPTS": f"-Djava.io.tmpdir={layout.es_tmp}",
    }
    # Through `env`, after runuser, which sets HOME to the service user's (nonexistent) home.
    argv = user.wrap(["env", *(f"{key}={value}" for key, value in env.items()),
                      str(es_home(layout) / "bin" / "elasticsearch"), "-d", "-p", str(layout.es_pidfile)])
    layout.es_pidfile.unlink(missing_ok=True)  # so that a stale pid is never taken for the new node
    # The launcher's output goes to a file so that the daemon cannot hold a pipe of ours open.
    with layout.es_launcher_log.open("ab") as out:
        try:
            rc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                cwd=layout.es_logs, timeout=ES_START_TIMEOUT_S, check=False).returncode
        except subprocess.TimeoutExpired:
            return  # still starting: the wait for health decides
    if rc != 0:
        raise ServiceError(
            f"{ES}: failed to start (launcher exit code {rc}). Log {_main_log(layout)}; its tail:\n"
            f"{_log_excerpt(layout.es_launcher_log)}"
        )


def elasticsearch_down(settings: Settings, layout: Layout) -> ServiceState:
    pid = _our_pid(layout)
    if pid is not None:
        log.info("stopping %s (pid %d)", ES, pid)
        terminate(pid, _marker(layout), ES_STOP_TIMEOUT_S, ES)
        layout.es_pidfile.unlink(missing_ok=True)
    return elasticsearch_state(settings, layout)
