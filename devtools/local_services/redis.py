"""The local Redis: its state, `up` and `down`.

We run the Debian `redis-server` (installed when missing) as a daemon bound to 127.0.0.1 on the
URL's port, with the URL's password, no persistence, and a memory bound that evicts keys with a TTL only.
"""

from __future__ import annotations

import logging
import shutil

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
REDIS_MARKER = "redis-server"
REDIS_MAXMEMORY = "512mb"
REDIS_START_TIMEOUT_S = 20.0
REDIS_STOP_TIMEOUT_S = 30.0
PIDFILE_WAIT_S = 5.0
LAUNCH_TIMEOUT_S = 60


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


def _our_pid(layout: Layout) -> int | None:
    return managed_pid(layout.redis_pidfile, REDIS_MARKER)


def redis_state(settings: Settings, layout: Layout) -> ServiceState:
    shown = redact_url(settings.redis_url)
    answers, error = _ping(settings.redis_url)
    pid = _our_pid(layout)
    if pid is not None:
        if answers and error is None:
            return ServiceState(REDIS, shown, True, True, f"ours, pid {pid}, data {layout.redis_dir}; log {layout.redis_log}")
        return ServiceState(REDIS, shown, False, True, f"ours, pid {pid}, not answering PING ({error}); log {layout.redis_log}")
    if answers:
        suffix = "" if error is None else f"; PING fails: {error}"
        return ServiceState(REDIS, shown, True, False, f"external; left alone{suffix}")
    return ServiceState(REDIS, shown, False, False, "not running")


def _wait_pong(settings: Settings, layout: Layout, pid: int | None, timeout: float) -> None:
    """Wait for PONG, giving up early when our process `pid` has exited."""

    def ponged_or_exited(result: tuple[bool, str | None]) -> bool:
        answers, error = result
        return (answers and error is None) or (pid is not None and not pid_alive(pid, REDIS_MARKER))

    answers, error = poll_until(lambda: _ping(settings.redis_url), ponged_or_exited, timeout=timeout, pause=0.2)
    if not (answers and error is None):
        raise ServiceError(
            f"{REDIS}: no PONG at {redact_url(settings.redis_url)} within {timeout:.0f}s ({error}). "
            f"Log {layout.redis_log}; its tail:\n{log_tail(layout.redis_log, 15)}"
        )


def redis_up(settings: Settings, layout: Layout) -> ServiceState:
    state = redis_state(settings, layout)
    if state.running:
        return state
    if state.managed:  # ours, still starting (perhaps from another `up`)
        _wait_pong(settings, layout, _our_pid(layout), REDIS_START_TIMEOUT_S)
        return redis_state(settings, layout)
    target = _startable_target(settings.redis_url)
    server = _redis_server_binary()
    user = service_user(create=True)
    check_reachable_by(user, layout.root)
    ensure_dir(layout.redis_dir, user)
    argv = [server, *_auth_config_args(target, layout, user), *_server_args(target.port, layout)]
    layout.redis_pidfile.unlink(missing_ok=True)  # so that a stale pid is never taken for the new server
    log.info("starting Redis on %s:%d", BIND_HOST, target.port)
    run_checked(user.wrap(argv), what="start redis-server", service=REDIS, log_hint=layout.redis_log,
                cwd=layout.redis_dir, timeout=LAUNCH_TIMEOUT_S)
    poll_until(layout.redis_pidfile.exists, bool, timeout=PIDFILE_WAIT_S, pause=0.05)
    _wait_pong(settings, layout, _our_pid(layout), REDIS_START_TIMEOUT_S)
    return redis_state(settings, layout)


def _startable_target(url: str) -> HostPort:
    """The URL's address, when nothing answers there and a server may be started for it."""
    target = parse_redis_url(url)
    if not is_local_host(target.host):
        raise ServiceError(
            f"{REDIS}: nothing answers at {target.host}:{target.port}, and only a local server (127.0.0.1) can be started"
        )
    if target.scheme != "redis":
        raise ServiceError(f"{REDIS}: nothing answers at {redact_url(url)}; the local server speaks plain redis://")
    return target


def _redis_server_binary() -> str:
    server = shutil.which("redis-server")
    if server is None:
        apt_install("redis-server", REDIS)
        server = shutil.which("redis-server")
        if server is None:
            raise ServiceError(f"{REDIS}: installed redis-server but it is not on PATH")
    return server


def _auth_config_args(target: HostPort, layout: Layout, user: RunAs) -> list[str]:
    """The private config file that holds the URL's password, when it has one.

    A file, not arguments, keeps the password out of the process list.
    """
    if not target.password:
        layout.redis_auth_conf.unlink(missing_ok=True)
        return []
    quoted = target.password.replace("\\", "\\\\").replace('"', '\\"')
    lines = [f'requirepass "{quoted}"']
    if target.username and target.username != "default":
        lines.append(f'user "{target.username}" on ">{quoted}" "~*" "&*" "+@all"')
    write_if_changed(layout.redis_auth_conf, "\n".join(lines) + "\n", user, mode=0o600)
    return [str(layout.redis_auth_conf)]


def _server_args(port: int, layout: Layout) -> list[str]:
    return [
        "--bind", BIND_HOST, "--port", str(port), "--daemonize", "yes",
        "--dir", str(layout.redis_dir), "--pidfile", str(layout.redis_pidfile), "--logfile", str(layout.redis_log),
        # No snapshots: nothing here needs them (cache entries are rebuilt, locks expire, and the
        # generation counter never falls below what Elasticsearch and the API recorded), and a
        # snapshot of a full cache forks and rewrites it every minute, a core's worth of CPU that
        # tripled the p99 of batch lookups (bench/bench_api.py, measured).
        "--save", "", "--appendonly", "no", "--protected-mode", "yes",
        # The lookup cache is bounded by memory: only keys with a TTL are evicted. The generation
        # counter has none; the ingestion locks do, so under memory pressure they can go too.
        "--maxmemory", REDIS_MAXMEMORY, "--maxmemory-policy", "volatile-lru",
    ]


def redis_down(settings: Settings, layout: Layout) -> ServiceState:
    pid = _our_pid(layout)
    if pid is not None:
        # SIGTERM makes Redis exit cleanly (no snapshot: none is configured).
        log.info("stopping Redis (pid %d)", pid)
        terminate(pid, REDIS_MARKER, REDIS_STOP_TIMEOUT_S, REDIS)
        layout.redis_pidfile.unlink(missing_ok=True)
    return redis_state(settings, layout)
