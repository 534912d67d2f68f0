"""`segmentation ui` driven in a real browser (Chromium from Debian's packages, through selenium and
chromium-driver), as an engineer would: the asset graph, one partition materialized from the UI,
the run's success and its checks' results, all read from the pages.

The UI runs on a namespace of its own (schema, lake, index prefix, Dagster home) and a schema of
its own in the Dagster database, dropped at the end. Screenshots are written to the test's folder;
the ones in docs/screenshots/ come from such a run.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from devtools.synthetic_lake import generate_lake
from resources.config_store.database import session_factory
from resources.config_store.history import CalculationHistory
from resources.config_store.segments import SegmentRepository
from resources.settings import Settings
from segmentation_assets.core.segment_types import SEGMENT_TYPES
from segmentation_assets.instance import DAGSTER_DATABASE_URL_VARIABLE
from tests.integration.dagster_ui_server import dagster_schema, running_ui
from tests.integration.results_folder import write_results
from tests.reference import ReferenceLake
from tests.reliability.sustained_load import settings_environment

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
PARTITION = "2026-11-20"
SEGMENTS = {"seg-ui-a": [f"c{n:04d}" for n in range(30)], "seg-ui-b": [f"c{n:04d}" for n in range(20, 45)]}


@pytest.fixture(scope="module")
def ui(settings: Settings, services: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    write_results(settings.lake_uri, "new_customers", PARTITION, SEGMENTS)
    with dagster_schema(services, "ui") as dagster_database:
        env = {**os.environ, **settings_environment(settings), DAGSTER_DATABASE_URL_VARIABLE: dagster_database}
        with running_ui(env, tmp_path_factory.mktemp("ui") / "ui.log") as url:
            yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail("chromium and chromium-driver are needed (scripts/test installs them from Debian's packages)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000"):
        options.add_argument(argument)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(15)  # elements a page renders after its queries answer
    yield driver
    driver.quit()


def page_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def wait_for_text(driver, wanted: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text_now = page_text(driver)
        if wanted in text_now:
            return text_now
        assert time.monotonic() < deadline, f"{wanted!r} never showed; the page said: {text_now[:1500]}"
        time.sleep(0.5)


def click_button(driver, label: str, timeout: float = 30) -> None:
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for button in driver.find_elements(By.XPATH, f"//button[normalize-space()='{label}']"):
            if button.is_displayed() and button.is_enabled():
                button.click()
                return
        time.sleep(0.3)
    raise AssertionError(f"no button {label!r}; the page said: {page_text(driver)[:1500]}")


def click_if_shown(driver, label: str, within: float = 2) -> None:
    from selenium.webdriver.common.by import By

    time.sleep(within)
    for button in driver.find_elements(By.XPATH, f"//button[normalize-space()='{label}']"):
        if button.is_displayed():
            button.click()


def test_an_engineer_materializes_a_partition_from_the_ui(ui: str, browser, tmp_path: Path) -> None:
    try:
        walk_through(browser, ui, tmp_path)
    except BaseException:
        browser.save_screenshot(str(tmp_path / "failure.png"))
        print(f"the page at the failure: {tmp_path / 'failure.png'}")
        raise
    print(f"screenshots in {tmp_path}")


def walk_through(driver, ui: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    # The asset graph of one segment type: its calculation, index and alias.
    driver.get(f"{ui}/locations/segmentation/asset-groups/new_customers")
    click_if_shown(driver, "Skip")  # Dagster's first-visit invitation to its community
    graph = wait_for_text(driver, "members")
    assert "index" in graph and "alias" in graph
    driver.save_screenshot(str(tmp_path / "asset-graph.png"))

    # One partition of the index asset, launched from the asset's page.
    driver.get(f"{ui}/assets/new_customers/index")
    click_if_shown(driver, "Skip")
    click_button(driver, "Materialize…")
    # Its calculation (`members`) was not materialized through Dagster here: the results folder
    # was written directly, as a calculation writes it. The UI asks to go on anyway.
    click_if_shown(driver, "Confirm")
    partitions = driver.find_element(By.CSS_SELECTOR, "[role=dialog] input[type=text]")
    partitions.click()
    partitions.send_keys(PARTITION, Keys.ENTER)
    driver.save_screenshot(str(tmp_path / "launch-dialog.png"))
    click_button(driver, "Launch 1 run")
    click_if_shown(driver, "Confirm", within=3)  # once more, should the UI ask again about the missing upstream

    # The run, as the runs page shows it (a partitioned launch is a backfill of one run: shown
    # among the runs once asked), then its page. The page refreshes itself every 15 s.
    driver.get(f"{ui}/runs")
    driver.find_element(By.XPATH, "//label[contains(normalize-space(), 'Show runs within backfills')]").click()
    runs = wait_for_text(driver, "Success", timeout=240)
    assert f"partition: {PARTITION}" in runs and "Failure" not in runs
    driver.save_screenshot(str(tmp_path / "runs.png"))
    driver.find_element(By.CSS_SELECTOR, "a[href*='/runs/']").click()
    wait_for_text(driver, "RUN_SUCCESS")  # the run's event log, its last events in view
    driver.save_screenshot(str(tmp_path / "run.png"))

    # Both checks of the materialization passed.
    driver.get(f"{ui}/assets/new_customers/index?view=checks")
    checks = wait_for_text(driver, "no_failed_chunks")
    lines = checks.splitlines()
    for check in ("complete", "no_failed_chunks"):
        assert lines[lines.index(check) + 1] == "Succeeded", checks[:1500]
    wait_for_text(driver, "Passed")
    driver.save_screenshot(str(tmp_path / "checks.png"))


# --- a backfill, as the UI launches it, run by the daemon --------------------------------------------------------

BACKFILL = ["2026-11-21", "2026-11-22", "2026-11-23"]
LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
BACKFILL_STATUS = "query Status($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } } }"
BACKFILL_RUNS = """
query Runs($id: String!) {
  runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
    ... on Runs { results { runId status tags { key value } } }
  }
}"""


def graphql(ui: str, query: str, **variables: object) -> dict:
    response = httpx.post(f"{ui}/graphql", json={"query": query, "variables": variables}, timeout=30)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def test_a_backfill_of_many_partitions_runs_as_one_run(ui: str, settings: Settings) -> None:
    """The same request the UI's "Launch backfill" sends (the whole type, three partitions); the
    daemon turns it into one run, whose history counts each partition against the one before."""
    generate_lake(settings.lake_uri, customers=300, days=15, seed=5, end=date(2026, 11, 23))
    params = {"max_days_since_signup": 5}
    segment = SegmentRepository(session_factory(settings.database_url)).create(
        name="ui backfill", segment_type="new_customers", params=params,
        targeting=SEGMENT_TYPES["new_customers"].parse_params(params).targeting(),
        labels={}, description=None, status="active", actor="test",
    )
    launch = {"partitionNames": BACKFILL, "assetSelection": [{"path": ["new_customers", s]} for s in ("members", "index", "alias")]}
    launched = graphql(ui, LAUNCH_BACKFILL, params=launch)["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    deadline = time.monotonic() + 300
    while (status := graphql(ui, BACKFILL_STATUS, id=launched["backfillId"])["partitionBackfillOrError"]["status"]) not in (
        "COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED"
    ):
        assert time.monotonic() < deadline, f"the backfill is still {status}"
        time.sleep(2)
    runs = graphql(ui, BACKFILL_RUNS, id=launched["backfillId"])["runsOrError"]["results"]
    assert [r["status"] for r in runs] == ["SUCCESS"], (status, runs)
    tags = {t["key"]: t["value"] for t in runs[0]["tags"]}
    assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == (BACKFILL[0], BACKFILL[-1])

    reference = ReferenceLake(Path(settings.lake_uri))
    members = {
        p: reference.members("new_customers", datetime.combine(date.fromisoformat(p) + timedelta(days=1), datetime.min.time(), timezone.utc), params)
        for p in BACKFILL
    }
    # The daemon's refresh-on-change sensor may calculate the new segment's latest closed day too.
    history = [
        c for c in CalculationHistory(session_factory(settings.database_url)).of_segment(segment.id, limit=10)
        if c.partition in BACKFILL
    ]
    assert [c.partition for c in history] == BACKFILL[::-1]
    expected = [(len(members[BACKFILL[0]]), len(members[BACKFILL[0]]), 0)] + [
        (len(members[now]), len(members[now] - members[before]), len(members[before] - members[now]))
        for before, now in zip(BACKFILL, BACKFILL[1:])
    ]
    assert [(c.member_count, c.entered, c.exited) for c in history[::-1]] == expected
    # Only the newest partition of the range is indexed, and served.
    assert [c.index is not None for c in history] == [True, False, False]
