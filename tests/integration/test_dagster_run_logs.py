"""Dagster's run logs are the platform's JSON lines whoever starts the run, and a run that the daemon
launches resolves the resources' URLs from the environment variables their config names.

- `segmentation run`, in a process of its own: its run's lines on stderr.
- `segmentation ui` (webserver, daemon, code server) on a free port, and a run launched as the UI
  launches one (GraphQL `launchRun`, no run config): queued, started by the daemon in a run worker
  (`dagster api execute_run`), its lines in the UI's output. The settings reach these processes
  under lower-case names (pydantic-settings reads them all the same), so no variable holds exactly
  `SEGMENTATION_DATABASE_URL`: the code server and the run worker each put the URLs under the names
  they derive (segmentation_assets/secret_settings.py), and the run connects with them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.synthetic_lake import generate_lake
from resources.config_store.database import session_factory
from resources.config_store.segments import SegmentRepository
from resources.settings import Settings
from segmentation_assets.core.segment_types import SEGMENT_TYPES
from segmentation_assets.instance import DAGSTER_DATABASE_URL_VARIABLE
from tests.integration.dagster_ui_server import dagster_schema, running_ui
from tests.integration.results_folder import write_results
from tests.reliability.sustained_load import settings_environment

pytestmark = pytest.mark.integration

# What Dagster's own console logger writes of a run: `2026-12-06 08:10:20 +0000 - dagster - DEBUG -
# __ASSET_JOB - <run id> - ...`. (A sensor's or schedule's own messages, `... - dagster - INFO -
# __repository__ - <sensor> - ...`, are written by the code server in that text still.)
DAGSTER_TEXT_LINE = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} - dagster - [A-Z]+ - \S+ - [0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-"
)
PLATFORM_KEYS = {"timestamp", "level", "logger", "event", "run_id", "job"}


def run_lines(output: str, run_id: str | None = None) -> list[dict[str, Any]]:
    """The run's log lines in a process's output, having checked that none is Dagster's text."""
    assert [line for line in output.splitlines() if DAGSTER_TEXT_LINE.search(line)] == []
    lines = []
    for line in output.splitlines():
        if line.startswith("{") and '"run_id"' in line:
            entry = json.loads(line)
            if run_id is None or entry["run_id"] == run_id:
                lines.append(entry)
    for entry in lines:
        assert PLATFORM_KEYS <= entry.keys() and entry["logger"] == "dagster", entry
    return lines


def test_segmentation_run_logs_the_run_as_json_lines(settings: Settings) -> None:
    generate_lake(settings.lake_uri, customers=300, days=15, seed=5, end=date(2026, 11, 23))
    params = {"max_days_since_signup": 5}
    SegmentRepository(session_factory(settings.database_url)).create(
        name="run logs", segment_type="new_customers", params=params,
        targeting=SEGMENT_TYPES["new_customers"].parse_params(params).targeting(),
        labels={}, description=None, status="active", actor="test",
    )
    env = {k: v for k, v in os.environ.items() if k != "SEGMENTATION_LOG_FORMAT"} | settings_environment(settings)
    completed = subprocess.run(
        [str(Path(sys.executable).parent / "segmentation"), "run", "--partition", "2026-11-23", "--segment-type", "new_customers"],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]

    lines = run_lines(completed.stderr)
    events = [line.get("dagster_event") for line in lines]
    assert events[0] == "RUN_START" and events[-1] == "RUN_SUCCESS", events
    assert {"STEP_START", "ASSET_MATERIALIZATION", "ASSET_CHECK_EVALUATION", "STEP_SUCCESS"} <= set(events)
    assert {line["step"] for line in lines if "step" in line} >= {"new_customers__members", "new_customers__index", "new_customers__alias"}
    # Bound by the command, on the run's lines too.
    assert all(line.get("command") == "run" and line.get("partition") == "2026-11-23" for line in lines)


@pytest.fixture(scope="module")
def ui(settings: Settings, services: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    log_path = tmp_path_factory.mktemp("ui") / "ui.log"
    inherited = {k: v for k, v in os.environ.items() if not k.upper().startswith("SEGMENTATION_")}
    lower_case = {name.lower(): value for name, value in settings_environment(settings).items()}
    with dagster_schema(services, "logs") as dagster_database:
        env = {**inherited, **lower_case, DAGSTER_DATABASE_URL_VARIABLE: dagster_database}
        with running_ui(env, log_path) as url:
            yield url, log_path


def graphql(url: str, query: str, **variables: object) -> dict[str, Any]:
    response = httpx.post(f"{url}/graphql", json={"query": query, "variables": variables}, timeout=30)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
STATUS = "query Status($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
RESOURCE = """
query Resource($selector: ResourceSelector!) {
  topLevelResourceDetailsOrError(resourceSelector: $selector) {
    ... on ResourceDetails { configuredValues { key value type } }
  }
}"""
LOCATION = {"repositoryLocationName": "segmentation", "repositoryName": "__repository__"}


def test_a_run_the_ui_launches_logs_json_lines_and_resolves_its_urls(ui: tuple[str, Path], settings: Settings) -> None:
    url, log_path = ui
    partition = "2026-11-20"
    write_results(settings.lake_uri, "new_customers", partition, {"seg-logs-a": ["c0001", "c0002"], "seg-logs-b": ["c0002"]})
    params = {
        "selector": {**LOCATION, "jobName": "__ASSET_JOB", "assetSelection": [
            {"path": ["new_customers", "index"]}, {"path": ["new_customers", "alias"]}
        ]},
        "runConfigData": {},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]},
    }
    launched = graphql(url, LAUNCH, params=params)["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline = time.monotonic() + 300
    while (status := graphql(url, STATUS, id=run_id)["runOrError"]["status"]) not in ("SUCCESS", "FAILURE", "CANCELED"):
        assert time.monotonic() < deadline, f"the run is still {status}; see {log_path}"
        time.sleep(1)
    time.sleep(1)  # the worker's last lines
    output = log_path.read_text()
    assert status == "SUCCESS", output[-5000:]

    lines = run_lines(output, run_id)
    events = [line.get("dagster_event") for line in lines]
    assert "RUN_START" in events and events[-1] == "RUN_SUCCESS", events
    assert {"STEP_START", "ASSET_MATERIALIZATION", "STEP_SUCCESS"} <= set(events)

    # What the UI shows of the URLs: the names of the variables that hold them.
    for resource, key, variable in (
        ("config_store", "database_url", "SEGMENTATION_DATABASE_URL_"),
        ("search", "url", "SEGMENTATION_ELASTICSEARCH_URL_"),
        ("redis", "url", "SEGMENTATION_REDIS_URL_"),
    ):
        details = graphql(url, RESOURCE, selector={**LOCATION, "resourceName": resource})["topLevelResourceDetailsOrError"]
        [value] = [v for v in details["configuredValues"] if v["key"] == key]
        assert value["type"] == "ENV_VAR" and value["value"].startswith(variable), value
