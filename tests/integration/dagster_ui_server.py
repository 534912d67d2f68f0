"""`segmentation ui` for tests: a schema of its own in the Dagster database, the server started on a
free port until its code location loads, and the whole process group stopped at the end (`dagster
dev`'s code server outlives it otherwise, and ignores SIGTERM)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from resources.settings import PROJECT_ROOT, Settings
from segmentation_assets.instance import dagster_database_url
from tests.reliability.sustained_load import free_port

LOADED_WITHIN = 180  # seconds: the code location imports Spark's side of the definitions
_LOCATIONS = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"


@contextlib.contextmanager
def dagster_schema(services: Settings, prefix: str) -> Iterator[str]:
    """The URL of a new schema in the Dagster database, dropped afterwards: the runs made there never
    show in the project's own UI (nor its runs there)."""
    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    url = make_url(dagster_database_url(services))
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    finally:
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@contextlib.contextmanager
def running_ui(env: dict[str, str], log_path: Path) -> Iterator[str]:
    """`segmentation ui` with this environment, its output in `log_path`; yields its URL once loaded."""
    port = free_port()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "ui", "--port", str(port)],
            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + LOADED_WITHIN
        while True:
            assert process.poll() is None, f"`segmentation ui` exited; see {log_path}"
            with contextlib.suppress(httpx.HTTPError, KeyError, TypeError):
                response = httpx.post(f"{url}/graphql", json={"query": _LOCATIONS}, timeout=5)
                entries = response.json()["data"]["workspaceOrError"]["locationEntries"]
                if entries and entries[0]["loadStatus"] == "LOADED":
                    assert [e["name"] for e in entries] == ["segmentation"]
                    break
            assert time.monotonic() < deadline, f"the code location did not load; see {log_path}"
            time.sleep(1)
        yield url
    finally:
        stop_process_group(process)


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM to the webserver, daemon and code servers alike, SIGKILL to whatever is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)
