"""`segmentation api` with several workers (cli/api_server.py): a socket per worker on one port,
connections spread over them, a dead worker replaced, the port refused to a second server."""

from __future__ import annotations

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


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


@pytest.fixture
def api(settings: Settings, tmp_path: Path) -> Iterator[ApiProcess]:
    server = ApiProcess(settings, workers=2, log_file=tmp_path / "api.log")
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


def test_a_dead_worker_is_replaced_and_the_port_keeps_answering(api: ApiProcess) -> None:
    victim, survivor = sorted(workers_of(api.pid))
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while len(workers_of(api.pid) - {victim}) < 2:
        assert httpx.get(f"{api.base_url}/healthz", timeout=5).status_code == 200  # the survivor answers meanwhile
        assert time.monotonic() < deadline, "no worker replaced the dead one"
        time.sleep(0.2)
    assert survivor in workers_of(api.pid)


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
