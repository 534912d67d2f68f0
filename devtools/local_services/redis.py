"""The local Redis servers: their state, `up` and `down`.

We run the Debian `redis-server` (installed when missing) as a daemon bound to 127.0.0.1 on the
URL's port, with the URL's password and no persistence. The cache's has a memory bound that evicts
keys with a TTL only. When `SEGMENTATION_LOCK_REDIS_URL` names another local server, a second one
holds the coordination keys (ingestion locks, the generation counter) and never evicts.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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
    apt_install,
    check_reachable_by,
    ensure_dir,
    log_tail,
    run_checked,
    service_user,
    write_if_changed,
)
from devtools.local_services.urls import (
    BIND_HOST,
    HostPort,
    accepts_tcp,
    is_local_host,
    parse_redis_url,
    redact_url,
)
from resources.settings import Settings

log = logging.getLogger(__name__)

REDIS = "Redis"
COORDINATION_REDIS = "Redis (coordination)"
REDIS_MARKER = "redis-server"
REDIS_MAXMEMORY = "512mb"
REDIS_START_TIMEOUT_S = 20.0
REDIS_STOP_TIMEOUT_S = 30.0
PIDFILE_WAIT_S = 5.0
LAUNCH_TIMEOUT_S = 60


@dataclass(frozen=True)
class RedisInstance:
    label: str
    url: str
    dir: Path
    evicting: bool  # the cache: bounded, evicting keys with a TTL; coordination: never evicting
    cluster: bool = False  # a node of a Redis Cluster (devtools/local_services/redis_cluster.py)

    @property
    def pidfile(self) -> Path:
        return self.dir / "redis.pid"

    @property
    def log(self) -> Path:
        return self.dir / "redis.log"

    @property
    def auth_conf(self) -> Path:
        return self.dir / "auth.conf"


def cache_instance(settings: Settings, layout: Layout) -> RedisInstance:
    return RedisInstance(REDIS, settings.redis_url, layout.redis_dir, evicting=True)


def coordination_instance(settings: Settings, layout: Layout) -> RedisInstance | None:
    """The coordination Redis to manage, when the settings give it a URL of its own."""
    coordination, cache = parse_redis_url(settings.coordination_redis_url), parse_redis_url(settings.redis_url)
    if (coordination.host, coordination.port) == (cache.host, cache.port):
        return None  # another database of the cache's own server: nothing more to start
    return RedisInstance(
        COORDINATION_REDIS, settings.coordination_redis_url, layout.root / "redis-coordination", evicting=False
    )


CoordinationStep = Callable[[Settings, Layout], ServiceState | None]


def _coordination_step(action: Callable[[RedisInstance], ServiceState]) -> CoordinationStep:
    def step(settings: Settings, layout: Layout) -> ServiceState | None:
        instance = coordination_instance(settings, layout)
        return action(instance) if instance is not None else None

    return step



def _ping(url: str) -> tuple[bool, str | None]:
    """(answers, error): answers is True when something listens at host:port; error is None on PONG."""
    import redis  # the client library; imported late to keep `status` cheap

    target = parse_redis_url(url)
    if not accepts_tcp(target.host, target.port):
        return False, "connection refused"
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
        return True, None
    except redis.RedisError as exc:
        return True, str(exc) or type(exc).__name__
    finally:
        client.close()


def _our_pid(instance: RedisInstance) -> int | None:
    return managed_pid(instance.pidfile, REDIS_MARKER)


def redis_state(settings: Settings, layout: Layout) -> ServiceState:
    return instance_state(cache_instance(settings, layout))


def redis_up(settings: Settings, layout: Layout) -> ServiceState:
    return instance_up(cache_instance(settings, layout))


def redis_down(settings: Settings, layout: Layout) -> ServiceState:
    return instance_down(cache_instance(settings, layout))


def instance_state(instance: RedisInstance) -> ServiceState:
    shown = redact_url(instance.url)
    answers, error = _ping(instance.url)
    pid = _our_pid(instance)
    label = instance.label
    if pid is not None:
        if answers and error is None:
            return ServiceState(label, shown, True, True, f"ours, pid {pid}, data {instance.dir}; log {instance.log}")
        return ServiceState(label, shown, False, True, f"ours, pid {pid}, not answering PING ({error}); log {instance.log}")
    if answers:
        suffix = "" if error is None else f"; PING fails: {error}"
        return ServiceState(label, shown, True, False, f"external; left alone{suffix}")
    return ServiceState(label, shown, False, False, "not running")


def _wait_pong(instance: RedisInstance, pid: int | None, timeout: float) -> None:
    """Wait for PONG, giving up early when our process `pid` has exited."""

    def ponged_or_exited(result: tuple[bool, str | None]) -> bool:
        answers, error = result
        return (answers and error is None) or (pid is not None and not pid_alive(pid, REDIS_MARKER))

    answers, error = poll_until(lambda: _ping(instance.url), ponged_or_exited, timeout=timeout, pause=0.2)
    if not (answers and error is None):
        raise ServiceError(
            f"{instance.label}: no PONG at {redact_url(instance.url)} within {timeout:.0f}s ({error}). "
            f"Log {instance.log}; its tail:\n{log_tail(instance.log, 15)}"
        )


def instance_up(instance: RedisInstance) -> ServiceState:
    state = instance_state(instance)
    if state.running:
        return state
    if state.managed:  # ours, still starting (perhaps from another `up`)
        _wait_pong(instance, _our_pid(instance), REDIS_START_TIMEOUT_S)
        return instance_state(instance)
    target = _startable_target(instance)
    server = _redis_server_binary()
    user = service_user(create=True)
    check_reachable_by(user, instance.dir.parent)
    ensure_dir(instance.dir, user)
    argv = [server, *_auth_config_args(target, instance, user), *_server_args(target.port, instance)]
    instance.pidfile.unlink(missing_ok=True)  # so that a stale pid is never taken for the new server
    log.info("starting %s on %s:%d", instance.label, BIND_HOST, target.port)
    run_checked(user.wrap(argv), what="start redis-server", service=instance.label, log_hint=instance.log,
                cwd=instance.dir, timeout=LAUNCH_TIMEOUT_S)
    poll_until(instance.pidfile.exists, bool, timeout=PIDFILE_WAIT_S, pause=0.05)
    _wait_pong(instance, _our_pid(instance), REDIS_START_TIMEOUT_S)
    return instance_state(instance)


def _startable_target(instance: RedisInstance) -> HostPort:
    """The URL's address, when nothing answers there and a server may be started for it."""
    target = parse_redis_url(instance.url)
    if not is_local_host(target.host):
        raise ServiceError(
            f"{instance.label}: nothing answers at {target.host}:{target.port}, and only a local server (127.0.0.1) "
            "can be started"
        )
    if target.scheme != "redis":
        raise ServiceError(
            f"{instance.label}: nothing answers at {redact_url(instance.url)}; the local server speaks plain redis://"
        )
    return target


def _redis_server_binary() -> str:
    server = shutil.which("redis-server")
    if server is None:
        apt_install("redis-server", REDIS)
        server = shutil.which("redis-server")
        if server is None:
            raise ServiceError(f"{REDIS}: installed redis-server but it is not on PATH")
    return server


def _auth_config_args(target: HostPort, instance: RedisInstance, user: RunAs) -> list[str]:
    """The private config file that holds the URL's password, when it has one.

    A file, not arguments, keeps the password out of the process list.
    """
    if not target.password:
        instance.auth_conf.unlink(missing_ok=True)
        return []
    quoted = target.password.replace("\\", "\\\\").replace('"', '\\"')
    lines = [f'requirepass "{quoted}"']
    if target.username and target.username != "default":
        lines.append(f'user "{target.username}" on ">{quoted}" "~*" "&*" "+@all"')
    write_if_changed(instance.auth_conf, "\n".join(lines) + "\n", user, mode=0o600)
    return [str(instance.auth_conf)]


def _server_args(port: int, instance: RedisInstance) -> list[str]:
    return [
        "--bind", BIND_HOST, "--port", str(port), "--daemonize", "yes",
        "--dir", str(instance.dir), "--pidfile", str(instance.pidfile), "--logfile", str(instance.log),
        # No snapshots: nothing here needs them (cache entries are rebuilt, locks expire, and the
        # generation counter never falls below what Elasticsearch and the API recorded), and a
        # snapshot of a full cache forks and rewrites it every minute, a core's worth of CPU that
        # tripled the p99 of batch lookups (bench/bench_api.py, measured).
        "--save", "", "--protected-mode", "yes",
        *_memory_args(instance),
        *_cluster_args(instance),
    ]


def _cluster_args(instance: RedisInstance) -> list[str]:
    if not instance.cluster:
        return []
    # nodes.conf (relative to --dir) keeps the node's id and the slots it serves across restarts.
    return ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"]


def _memory_args(instance: RedisInstance) -> list[str]:
    if not instance.evicting:
        # A lock or the counter evicted breaks a guarantee. Its few keys are kept in an append-only
        # file, so the generation survives a restart of this server (the cache's needs none).
        return ["--maxmemory-policy", "noeviction", "--appendonly", "yes"]
    # The lookup cache is bounded by memory: only keys with a TTL are evicted. The generation
    # counter has none; the ingestion locks do, so they belong on the coordination Redis.
    return ["--maxmemory", REDIS_MAXMEMORY, "--maxmemory-policy", "volatile-lru", "--appendonly", "no"]


def instance_down(instance: RedisInstance) -> ServiceState:
    pid = _our_pid(instance)
    if pid is not None:
        # SIGTERM makes Redis exit cleanly (no snapshot: none is configured).
        log.info("stopping %s (pid %d)", instance.label, pid)
        terminate(pid, REDIS_MARKER, REDIS_STOP_TIMEOUT_S, instance.label)
        instance.pidfile.unlink(missing_ok=True)
    return instance_state(instance)


# `services up|down|status` for the coordination Redis: nothing (None) unless it has a URL of its own.
coordination_state = _coordination_step(instance_state)
coordination_up = _coordination_step(instance_up)
coordination_down = _coordination_step(instance_down)
