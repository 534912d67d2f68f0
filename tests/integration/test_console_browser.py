"""The console in a real browser (Chromium from Debian's packages, through selenium and
chromium-driver), against the real thing: `segmentation api` and `segmentation ui` (the Dagster
webserver and daemon, whose preview sensor runs the previews) in processes of their own, on a
namespace of their own with a small generated lake.

The walk: sign in; a value out of range gets the API's error beside its field, and is fixed; a
preview shows the count the API's preview gives; the segment is saved and listed; an edit based
on a stale version says so (412); the segment is archived. The browser's console logs no error
on the way. Screenshots at 1280 and 390 px wide go to the test's folder, or to the folder named
by CONSOLE_SCREENSHOTS (docs/screenshots/ holds the ones of such a run).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.synthetic_lake import generate_lake
from resources.config_store.api_keys import ApiKeyRepository
from resources.config_store.database import session_factory
from resources.settings import Settings
from segmentation_assets.instance import DAGSTER_DATABASE_URL_VARIABLE
from tests.integration.dagster_ui_server import dagster_schema, running_ui
from tests.reliability.sustained_load import ApiProcess, settings_environment

pytestmark = pytest.mark.integration

PREVIEW_WITHIN = 420  # seconds: the sensor's tick, a run's start, Spark's start and the count
CALCULATED_WITHIN = 540  # seconds: refresh on change settles, then a run (the contract: 10 minutes)


@pytest.fixture(scope="module")
def lake(settings: Settings) -> Settings:
    yesterday = (datetime.now(timezone.utc) - timedelta(days=1)).date()
    generate_lake(settings.lake_uri, customers=400, days=60, seed=11, end=yesterday)
    return settings


@pytest.fixture(scope="module")
def ui(lake: Settings, services: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`segmentation ui`: its daemon runs the preview sensor, which runs the previews."""
    with dagster_schema(services, "console") as dagster_database:
        env = {**os.environ, **settings_environment(lake), DAGSTER_DATABASE_URL_VARIABLE: dagster_database}
        with running_ui(env, tmp_path_factory.mktemp("ui") / "ui.log") as url:
            yield url


@pytest.fixture(scope="module")
def api(lake: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process = ApiProcess(lake, workers=1, log_file=tmp_path_factory.mktemp("api") / "api.log")
    yield process.base_url
    process.stop()


@pytest.fixture(scope="module")
def admin_key(lake: Settings) -> str:
    return ApiKeyRepository(session_factory(lake.database_url)).create("console-browser", "admin")


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        pytest.fail("chromium and chromium-driver are needed (scripts/test installs them from Debian's packages)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    options.binary_location = chromium
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    yield driver
    driver.quit()


class Walk:
    """The browser, with what a walk needs: waits, the console's log, screenshots."""

    def __init__(self, driver: Any, api: str, folder: Path) -> None:
        self.driver, self.api, self.folder = driver, api, folder
        self.logged: list[dict[str, Any]] = []

    def by(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def text(self) -> str:
        return self.by("body").text

    def wait_for(self, css: str, timeout: float = 20) -> Any:
        from selenium.common.exceptions import NoSuchElementException

        deadline = time.monotonic() + timeout
        while True:
            try:
                element = self.by(css)
                if element.is_displayed():
                    return element
            except NoSuchElementException:
                pass
            assert time.monotonic() < deadline, f"{css!r} never showed; the page said: {self.text()[:1500]}"
            time.sleep(0.25)

    def type_into(self, css: str, value: str) -> None:
        element = self.by(css)
        element.clear()
        element.send_keys(value)

    def click(self, text: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.XPATH, f"//*[self::button or self::a][normalize-space()='{text}']").click()

    def log(self) -> list[dict[str, Any]]:
        self.logged += self.driver.get_log("browser")
        return self.logged

    def screenshot(self, name: str, width: int = 1280) -> None:
        """The whole page at this width (the window grown to the page's height)."""
        self.driver.set_window_size(width, 900)
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        self.driver.set_window_size(width, min(max(height, 600), 4000))
        self.driver.execute_script("window.scrollTo(0, 0)")
        self.driver.save_screenshot(str(self.folder / f"console-{name}.png"))
        self.driver.set_window_size(1280, 900)


@pytest.mark.timeout(1800)
def test_an_owner_creates_previews_edits_and_archives_a_segment_in_the_console(
    ui: str, api: str, admin_key: str, driver: Any, tmp_path: Path
) -> None:
    folder = Path(os.environ.get("CONSOLE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    walk = Walk(driver, api, folder)
    try:
        walk_through(walk, admin_key, ui)
    except BaseException:
        driver.save_screenshot(str(tmp_path / "failure.png"))
        print(f"the page at the failure: {tmp_path / 'failure.png'}; the browser's log: {walk.log()}")
        raise
    errors = [entry for entry in walk.log() if entry["level"] == "SEVERE"]
    assert errors == [], errors
    print(f"screenshots in {folder}")


def wait_for_calculation(api: str, segment_id: str, headers: dict[str, str], count: int = 1) -> dict[str, Any]:
    """The segment's newest calculation once its history holds `count` of them, the newest served."""
    deadline = time.monotonic() + CALCULATED_WITHIN
    while True:
        history = httpx.get(f"{api}/v1/segments/{segment_id}/history", headers=headers, timeout=10).json()
        calculations = history["calculations"]
        if len(calculations) >= count and calculations[0]["served"]:
            return calculations[0]
        assert time.monotonic() < deadline, f"not calculated in time: {history}"
        time.sleep(3)


LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) { __typename ... on PythonError { message } }
}"""


def backfill(ui: str, latest: str, days: int) -> list[str]:
    """The type's partitions of the days before `latest`, as the UI's "Launch backfill" asks for
    them (one run): a history to draw. The newer calculation stays served."""
    end = datetime.strptime(latest, "%Y-%m-%d")
    partitions = [(end - timedelta(days=n)).strftime("%Y-%m-%d") for n in range(days, 0, -1)]
    assets = [{"path": ["new_customers", step]} for step in ("members", "index", "alias")]
    body = {"query": LAUNCH_BACKFILL, "variables": {"params": {"partitionNames": partitions, "assetSelection": assets}}}
    launched = httpx.post(f"{ui}/graphql", json=body, timeout=30).json()["data"]["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return partitions


def walk_through(walk: Walk, admin_key: str, ui: str) -> None:
    headers = {"Authorization": f"Bearer {admin_key}"}
    driver = walk.driver

    # Sign in: the console sends a browser without a session to the sign-in form.
    driver.get(f"{walk.api}/console/")
    walk.wait_for("#api-key").send_keys(admin_key)
    walk.screenshot("sign-in")
    walk.click("Sign in")
    walk.wait_for("table.segments")
    assert admin_key not in driver.current_url

    # A new segment of a type; a value out of range gets the API's own message beside its field.
    walk.click("New segment")
    walk.click("new_customers")
    walk.type_into("#field-name", "Recent sign-ups <b>EU</b>")
    walk.type_into("#field-labels", "team: growth")
    walk.type_into("#field-params-max_days_since_signup", "400")
    walk.click("Create segment")
    error = walk.wait_for("#field-params-max_days_since_signup-error")
    assert "365" in error.text, error.text
    assert walk.by("#field-params-max_days_since_signup").get_attribute("aria-invalid") == "true"
    assert walk.by("#field-params-max_days_since_signup").get_attribute("value") == "400"
    assert walk.by("#field-name").get_attribute("value") == "Recent sign-ups <b>EU</b>"  # kept, as text
    walk.screenshot("form-error")
    walk.type_into("#field-params-max_days_since_signup", "30")

    # The preview: progress while the platform counts, then the count the API's preview gives.
    walk.click("Preview")
    walk.wait_for("#preview progress, #preview [data-member-count]", timeout=30)
    count = walk.wait_for("#preview [data-member-count]", timeout=PREVIEW_WITHIN)
    preview_id = walk.by("#preview [data-preview-id]").get_attribute("data-preview-id")
    preview = httpx.get(f"{walk.api}/v1/previews/{preview_id}", headers=headers, timeout=10).json()
    assert preview["status"] == "done" and preview["params"] == {"max_days_since_signup": 30, "max_orders": 0}
    assert int(count.get_attribute("data-member-count")) == preview["member_count"]
    assert count.text == f"{preview['member_count']:,}"
    assert not walk.by("#field-params-max_days_since_signup-error").is_displayed()  # the fixed field's error is gone
    walk.screenshot("preview")

    # Saved, it is listed; the daemon calculates it (refresh on change), and the list says so.
    walk.click("Create segment")
    walk.wait_for(".notice")
    assert "Segment created." in walk.text()
    segment_id = driver.current_url.split("/segments/")[1].split("?")[0]
    walk.click("Segments")
    walk.wait_for("table.segments")
    assert "Recent sign-ups <b>EU</b>" in walk.text()
    latest = wait_for_calculation(walk.api, segment_id, headers)
    assert (latest["partition"], latest["member_count"]) == (preview["partition"], preview["member_count"])  # same code
    earlier: list[str] = []
    if os.environ.get("CONSOLE_SCREENSHOTS"):  # for the docs' pictures, a history to draw: six days more
        earlier = backfill(ui, latest["partition"], days=6)
        newest = wait_for_calculation(walk.api, segment_id, headers, count=1 + len(earlier))
        assert newest["partition"] == latest["partition"]  # the backfill of older days left it served
    driver.refresh()
    row = walk.wait_for(f"tr:has(a[href='/console/segments/{segment_id}'])").text
    assert f"{latest['member_count']:,}" in row and latest["partition"] in row and "fresh" in row, row
    walk.screenshot("list")
    walk.screenshot("list-390", width=390)

    # The keyboard: the first Tab reaches the skip link; the lookup's field has the focus, Enter sends it.
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    ActionChains(driver).send_keys(Keys.TAB).perform()
    assert driver.switch_to.active_element.text == "Skip to content"
    walk.click("Customer lookup")
    walk.wait_for("#customer-id")
    member = preview["sample_customer_ids"][0]
    assert driver.switch_to.active_element.get_attribute("id") == "customer-id"
    ActionChains(driver).send_keys(member, Keys.ENTER).perform()
    walk.wait_for(f"a[href='/console/segments/{segment_id}']")
    assert f"Segments of {member}" in walk.text()
    walk.screenshot("lookup")

    # An edit based on a version someone else has changed meanwhile: the 412 is shown.
    driver.get(f"{walk.api}/console/segments/{segment_id}")
    walk.click("Edit")
    walk.wait_for("#field-name")
    changed = httpx.patch(
        f"{walk.api}/v1/segments/{segment_id}",
        json={"labels": {"team": "crm"}},
        headers={**headers, "If-Match": "1"},
        timeout=10,
    )
    assert changed.status_code == 200, changed.text
    walk.type_into("#field-params-max_days_since_signup", "45")
    walk.click("Save changes")
    walk.wait_for("#conflict")
    assert "Changed meanwhile (412)" in walk.text() and "at version 2" in walk.text()
    assert walk.by("#field-params-max_days_since_signup").get_attribute("value") == "45"  # what was typed is kept
    walk.screenshot("stale-edit")

    # The segment's page (parameters, history, audit trail); then it is archived, after a confirmation.
    driver.get(f"{walk.api}/console/segments/{segment_id}")
    walk.wait_for("#audit-heading")
    assert len(driver.find_elements("css selector", "svg circle.point")) == 1 + len(earlier)
    walk.screenshot("segment")
    walk.screenshot("segment-390", width=390)
    walk.click("Archive")
    walk.wait_for("button.danger")
    walk.screenshot("archive-confirmation")
    walk.click("Archive segment")
    walk.wait_for(".notice")
    assert "Archived" in walk.text()
    assert httpx.get(f"{walk.api}/v1/segments/{segment_id}", headers=headers, timeout=10).json()["status"] == "archived"
