"""Helpers of the reliability suite: an API in front of TCP proxies, keys of each scope, and
calculations published the way the platform publishes them (results folder -> index -> alias).

Outages are TCP proxies (`tests.tcp_proxy.TcpProxy`) between the API and the shared servers,
never the servers themselves; ingestion faults are `tests.integration.es_proxy.FaultyElasticsearch`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from api.state import AppState
from api.main import create_app
from resources.config_store.api_keys import ApiKeyRepository
from resources.config_store.database import session_factory
from resources.settings import Settings
from tests.integration.publishing import TYPE, failure_text, materialization, publish
from tests.integration.results_folder import write_results
from tests.integration.test_config_api import Keys  # admin and reader keys, with their headers
from tests.tcp_proxy import TcpProxy


def make_keys(settings: Settings, name: str) -> Keys:
    repository = ApiKeyRepository(session_factory(settings.database_url))
    return Keys(repository.create(f"{name}-admin", "admin"), repository.create(f"{name}-reader", "read"), repository)


def port_of(url: str) -> int:
    return int(urlsplit(url.replace("postgresql+psycopg2", "postgresql")).port or 0)


@dataclass
class Proxies:
    """One proxy per server the API talks to; cut them to take that server away from the API only."""

    elasticsearch: TcpProxy
    redis: TcpProxy
    postgresql: TcpProxy

    @classmethod
    def open(cls, settings: Settings) -> Proxies:
        return cls(
            TcpProxy("127.0.0.1", port_of(settings.elasticsearch_url)),
            TcpProxy("127.0.0.1", port_of(settings.redis_url)),
            TcpProxy("127.0.0.1", port_of(settings.database_url)),
        )

    def settings_for_api(self, settings: Settings) -> Settings:
        redis = urlsplit(settings.redis_url)
        database = make_url(settings.database_url).set(host="127.0.0.1", port=self.postgresql.port)
        return settings.model_copy(
            update={
                "elasticsearch_url": f"http://{self.elasticsearch.url_authority}",
                "redis_url": redis._replace(netloc=redis.netloc.replace(f":{redis.port}", f":{self.redis.port}")).geturl(),
                "database_url": database.render_as_string(hide_password=False),
            }
        )

    def forward_all(self) -> None:
        for proxy in (self.elasticsearch, self.redis, self.postgresql):
            proxy.forward()

    def close(self) -> None:
        for proxy in (self.elasticsearch, self.redis, self.postgresql):
            proxy.close()


@dataclass
class RunningApi:
    base_url: str
    app: FastAPI

    @property
    def state(self) -> AppState:
        return self.app.state.segmentation


@contextmanager
def api_server(settings: Settings, state_dir: Path, **overrides: object) -> Iterator[RunningApi]:
    """A real HTTP server (uvicorn, in a thread of this process) in front of `create_app`, so that
    threads of the test can call it while the test breaks things."""
    app = create_app(settings.model_copy(update={"state_dir": state_dir, **overrides}))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, name="api-under-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield RunningApi(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        thread.join(30)


@contextmanager
def serving(settings: Settings, state_dir: Path, **overrides: object) -> Iterator[TestClient]:
    """An API process on these settings, with its own generation file."""
    app_settings = settings.model_copy(update={"state_dir": state_dir, **overrides})
    with TestClient(create_app(app_settings), raise_server_exceptions=False) as client:
        yield client


def run_ingestion(settings: Settings, partition_key: str) -> dg.ExecuteInProcessResult:
    """The `new_customers` index and alias assets of a partition, through Dagster, over the
    results folder already in the lake, as `segmentation run` runs them after Spark."""
    with dg.instance_for_test() as instance:
        return publish(settings, partition_key, instance)


def publish_calculation(settings: Settings, partition_key: str, segments: dict[str, list[str]]) -> dict[str, object]:
    """Writes a `new_customers` calculation's results folder and publishes it; answers the index
    asset's metadata."""
    write_results(settings.lake_uri, TYPE, partition_key, segments)
    result = run_ingestion(settings, partition_key)
    assert result.success, failure_text(result)
    return materialization(result, "index")
