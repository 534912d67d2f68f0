"""`segmentation api` with several workers (cli/api_server.py): a socket per worker on one port,
connections spread over them, a dead worker replaced, the port refused to a second server."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from resources.settings import PROJECT_ROOT, Settings
from tests.reliability.sustained_load import ApiProcess, settings_environment

pytestmark = pytest.mark.integration


def workers_of(pid: int) -> set[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return {int(c) for c in children if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text()}


def listens(pid: int, port: int) -> bool:
    """Whether the process holds a socket listening on the port (a worker past its imports)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:] + Path("/proc/net/tcp6").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
            inodes.add(fields[9])
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # an fd closed while we look
            held.add(os.readlink(fd).removeprefix("socket:[").rstrip("]"))
    return bool(inodes & held)


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


@pytest.fixture
def api(settings: Settings, tmp_path: Path) -> Iterator[ApiProcess]:
    """Two workers, both listening: ready means one of them answered, the other may still be importing."""
    server = ApiProcess(settings, workers=2, log_file=tmp_path / "api.log")
    deadline = time.monotonic() + 60
    while not (len(workers_of(server.pid)) == 2 and all(listens(w, server.port) for w in workers_of(server.pid))):
        assert time.monotonic() < deadline, "the second worker never listened"
        time.sleep(0.1)
    yield server
    server.stop()


def test_keep_alive_connections_are_spread_over_the_workers(api: ApiProcess) -> None:
    workers = workers_of(api.pid)
    assert len(workers) == 2
    before = {w: cpu_ticks(w) for w in workers}
    # A burst of new connections, as a client pool opens them: through one shared socket, the
    # worker that wakes first accepts them all.
    connections = [http.client.HTTPConnection("127.0.0.1", api.port, timeout=10) for _ in range(32)]
    for connection in connections:
        connection.connect()
    for _ in range(60):
        for connection in connections:
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            assert response.status == 200 and response.read()
    for connection in connections:
        connection.close()
    used = {w: cpu_ticks(w) - before[w] for w in workers}
    assert min(used.values()) >= 0.15 * sum(used.values()), used  # one shared socket let one worker take them all


def exited(pid: int) -> bool:
    """Whether the process is gone or a zombie: either way its sockets are closed."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_killed_worker_is_replaced_and_the_port_keeps_answering(api: ApiProcess) -> None:
    """Killed (the OOM killer, an operator) while serving: another takes its place."""
    victim, survivor = sorted(workers_of(api.pid))
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    # Until its socket closes with it, the kernel may still queue connections on the victim's
    # socket, and resets them when it closes (docs/operations.md: net.ipv4.tcp_migrate_req).
    while not exited(victim):
        assert time.monotonic() < deadline, "the killed worker did not exit"
        time.sleep(0.01)
    while len(workers_of(api.pid) - {victim}) < 2:
        assert httpx.get(f"{api.base_url}/healthz", timeout=5).status_code == 200  # the survivor answers meanwhile
        assert time.monotonic() < deadline, "no worker replaced the dead one"
        time.sleep(0.2)
    assert survivor in workers_of(api.pid)


def test_a_worker_killed_while_starting_is_replaced_too(settings: Settings, tmp_path: Path) -> None:
    """Only a worker that exits with an error before serving stops the server; a killed one does not."""
    env = {**os.environ, **settings_environment(settings)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with (tmp_path / "api.log").open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "api", "--port", str(port), "--workers", "2"],
            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while len(workers_of(server.pid)) < 2:  # spawned, still importing: far from serving
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.05)
            victim = min(workers_of(server.pid))
            os.kill(victim, signal.SIGKILL)
            while True:
                assert server.poll() is None, "the server stopped instead of replacing the worker"
                assert time.monotonic() < deadline, "the server did not become ready"
                if len(workers_of(server.pid) - {victim}) == 2:
                    with contextlib.suppress(httpx.HTTPError):
                        if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                            break
                time.sleep(0.2)
        finally:
            server.terminate()
            server.wait(30)


def test_a_worker_listens_only_once_the_app_is_loaded(settings: Settings, tmp_path: Path) -> None:
    """A socket bound while the worker still imports would get its share of new connections queued,
    unanswered for seconds, and reset if the worker died before serving."""
    env = {**os.environ, **settings_environment(settings)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log_file = tmp_path / "api.log"
    with log_file.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "api", "--port", str(port), "--workers", "2"],
            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            seen_loading, early = set(), set()
            while True:
                workers = workers_of(server.pid)
                listening = {w for w in workers if listens(w, port)}
                # uvicorn logs this once it has imported the app, before its startup (read after
                # the sockets, so that a worker loaded in between is not taken for an early one)
                loaded = {w for w in workers if f"Started server process [{w}]" in log_file.read_text()}
                seen_loading |= workers - loaded
                early |= listening - loaded
                if len(workers) == 2 and listening == workers:
                    break
                assert time.monotonic() < deadline and server.poll() is None, "the workers never listened"
                time.sleep(0.02)
        finally:
            server.terminate()
            server.wait(30)
    assert seen_loading  # the check ran while a worker was still loading
    assert not early, f"workers {early} listened before the app was loaded"


def test_a_second_server_on_the_same_port_is_refused(api: ApiProcess, settings: Settings) -> None:
    env = {**os.environ, **settings_environment(settings)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    second = subprocess.run(
        [sys.executable, "-m", "cli.main", "api", "--port", str(api.port), "--workers", "2"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert second.returncode != 0 and "Address already in use" in second.stderr


def test_sigterm_stops_every_worker(settings: Settings, tmp_path: Path) -> None:
    server = ApiProcess(settings, workers=2, log_file=tmp_path / "api.log")
    workers = workers_of(server.pid)
    server.stop()
    assert server.returncode == 0
    assert not [w for w in workers if Path(f"/proc/{w}").exists()]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", server.port))  # nothing listens there any more


def test_a_worker_that_cannot_start_stops_the_server_with_an_error(settings: Settings) -> None:
    env = {**os.environ, **settings_environment(settings), "SEGMENTATION_API_BREAKER_FAILURES": "0"}  # out of range
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    failed = subprocess.run(
        [sys.executable, "-m", "cli.main", "api", "--port", str(port), "--workers", "2"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert failed.returncode != 0
    assert "while starting" in failed.stderr and "api_breaker_failures" in failed.stderr
    assert time.monotonic() - started < 60  # not a loop of workers started again and again
