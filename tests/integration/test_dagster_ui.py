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
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from resources.settings import PROJECT_ROOT, Settings
from segmentation_assets.instance import DAGSTER_DATABASE_URL_VARIABLE, dagster_database_url
from tests.integration.results_folder import write_results
from tests.reliability.sustained_load import free_port, settings_environment

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
PARTITION = "2026-11-20"
SEGMENTS = {"seg-ui-a": [f"c{n:04d}" for n in range(30)], "seg-ui-b": [f"c{n:04d}" for n in range(20, 45)]}
LOADED_WITHIN = 180  # seconds: the code location imports Spark's side of the definitions


@pytest.fixture(scope="module")
def dagster_database(services: Settings) -> Iterator[str]:
    """A schema of its own in the Dagster database, so that the runs here never show in the
    project's own UI (nor its runs here)."""
    schema = f"ui_{uuid.uuid4().hex[:8]}"
    url = make_url(dagster_database_url(services))
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    with engine.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture(scope="module")
def ui(settings: Settings, dagster_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    write_results(settings.lake_uri, "new_customers", PARTITION, SEGMENTS)
    port = free_port()
    log = (tmp_path_factory.mktemp("ui") / "ui.log").open("w")
    env = {**os.environ, **settings_environment(settings), DAGSTER_DATABASE_URL_VARIABLE: dagster_database}
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "ui", "--port", str(port)], cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    query = '{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }'
    deadline = time.monotonic() + LOADED_WITHIN
    while True:
        assert process.poll() is None, f"`segmentation ui` exited; see {log.name}"
        try:
            entries = httpx.post(f"{url}/graphql", json={"query": query}, timeout=5).json()["data"]["workspaceOrError"]["locationEntries"]
            if entries and entries[0]["loadStatus"] == "LOADED":
                assert [e["name"] for e in entries] == ["segmentation"]
                break
        except (httpx.HTTPError, KeyError, TypeError):
            pass
        assert time.monotonic() < deadline, f"the code location did not load; see {log.name}"
        time.sleep(1)
    yield url
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
    log.close()


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
