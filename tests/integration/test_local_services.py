"""`segmentation services up/down/status` on the servers this session runs on: a second `up`
changes nothing, and what answers at a configured URL without having been started from this
state folder is used as it is, and left running by `down`; what `up` starts for a state folder of
its own, `down` stops."""

from __future__ import annotations

import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import psycopg2
import pytest
import redis

from devtools.local_services import services_down, services_status, services_up
from resources.settings import Settings
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration


def described(states) -> list[tuple[str, bool, bool, str]]:
    return [(s.name, s.running, s.managed, s.detail) for s in states]


def test_a_second_up_changes_nothing(services: Settings) -> None:
    before = services_status(services)
    assert all(s.running for s in before)
    assert described(services_up(services)) == described(before)  # same processes (their pids), same state
    assert described(services_status(services)) == described(before)


def test_what_answers_without_us_is_used_as_it_is_and_left_alone(services: Settings, tmp_path: Path) -> None:
    # A Redis at another address, and a state folder that started nothing: all three are someone else's.
    proxy = TcpProxy("127.0.0.1", urlsplit(services.redis_url).port or 6379)
    elsewhere = services.model_copy(update={"state_dir": tmp_path / "state", "redis_url": f"redis://127.0.0.1:{proxy.port}/0"})
    try:
        states = services_up(elsewhere)
        assert [(s.name, s.running, s.managed) for s in states] == [(s.name, True, False) for s in states]
        assert not list((tmp_path / "state").rglob("*.pid"))  # nothing was started for this folder

        services_down(elsewhere)
        assert redis.Redis(port=proxy.port).ping()
        assert all(s.running for s in services_status(services))
        assert all(s.running and not s.managed for s in services_status(elsewhere))
    finally:
        proxy.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def own_state_dir(services: Settings) -> Iterator[Path]:
    # Beside the session's state folder, not under tmp_path: the service user must be able to reach it.
    folder = Path(services.state_dir) / f"test-{uuid.uuid4().hex[:8]}"
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_what_up_starts_for_its_own_folder_down_stops(services: Settings, own_state_dir: Path) -> None:
    redis_port, pg_port = _free_port(), _free_port()
    own = services.model_copy(update={
        "state_dir": own_state_dir,
        "redis_url": f"redis://:r%40dis-pw@127.0.0.1:{redis_port}/0",
        "database_url": f"postgresql+psycopg2://own:pg-pw@127.0.0.1:{pg_port}/owndb",
    })
    try:
        es, pg, rd = services_up(own)
        assert (es.running, es.managed) == (True, False)  # the session's Elasticsearch, left alone
        assert (pg.running, pg.managed, rd.running, rd.managed) == (True, True, True, True)
        assert "pg-pw" not in pg.url and "r@dis-pw" not in rd.url and "r%40dis-pw" not in rd.url
        assert redis.Redis(port=redis_port, password="r@dis-pw").ping()
        for dbname in ("owndb", "owndb_dagster"):
            psycopg2.connect(host="127.0.0.1", port=pg_port, user="own", password="pg-pw", dbname=dbname).close()
        redis_pid = int((own_state_dir / "redis" / "redis.pid").read_text())
        assert not any("r@dis-pw" in arg for arg in psutil.Process(redis_pid).cmdline())

        states = services_down(own)
        assert [(s.name, s.running) for s in states] == [("Elasticsearch", True), ("PostgreSQL", False), ("Redis", False)]
        assert not psutil.pid_exists(redis_pid) or psutil.Process(redis_pid).status() == psutil.STATUS_ZOMBIE
        assert all(s.running for s in services_status(services))
    finally:
        services_down(own)
