"""`segmentation services up/down/status` on the servers this session runs on: a second `up`
changes nothing, and what answers at a configured URL without having been started from this
state folder is used as it is, and left running by `down`."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

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
