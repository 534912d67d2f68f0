"""Previews on the real PostgreSQL and Spark: the API validates and queues them; the preview sensor
(evaluated by hand) asks for a run of `preview_job`, which is executed in process on a test
instance; the counts and samples are checked against the plain-Python reference."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from elasticsearch import Elasticsearch
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from api.main import create_app
from api.previews import service as preview_service
from definitions import build_definitions
from resources.config_store.api_keys import ApiKeyRepository
from resources.config_store.database import session_factory
from resources.config_store.previews import PreviewRepository
from resources.config_store.segments import SegmentFilters, SegmentRepository
from resources.partition_keys import latest_closed_partition
from resources.settings import Settings
from segmentation_assets.dagster_resources import ConfigStoreResource
from segmentation_assets.instance import _DAGSTER_YAML
from segmentation_assets.previews import PREVIEW_JOB, PREVIEW_SENSOR, preview_sensor
from tests.lake_builder import write_lake
from tests.reference import ReferenceLake

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PARTITION = "2026-11-25"
T = datetime(2026, 11, 26, tzinfo=timezone.utc)  # the end of PARTITION's window
NO_RAW_DATA = "2026-06-01"  # a partition of the deployment, long before the lake's first order
CUSTOMERS = [f"c{n:02d}" for n in range(1, 41)]
PREVIEWS: dict[str, dict[str, Any]] = {
    # More than 20 members: the sample is the 20 smallest ids.
    "busy": {"segment_type": "frequent_buyers", "params": {"min_orders": 1, "lookback_days": 30}},
    "narrowed": {"segment_type": "frequent_buyers", "params": {"min_orders": 2, "lookback_days": 10, "category": "pharmacy"}},
    "new": {"segment_type": "new_customers", "params": {"max_days_since_signup": 15, "max_orders": 1}},
    "nobody": {"segment_type": "high_spenders", "params": {"min_total_amount": 1e9, "lookback_days": 30}},
}


def build_lake(root: Path) -> None:
    """40 customers, one signing up each day before T; customer n orders on the n % 12 days before T."""
    stores = [("s1", "Farmacia Sol", "pharmacy", "Madrid", "ES"), ("s2", "Super Norte", "grocery", "Bilbao", "ES")]
    orders = []
    for n, customer in enumerate(CUSTOMERS, start=1):
        for day in range(1, n % 12 + 1):
            created = T - timedelta(days=day - 1, hours=n % 5 + 1)
            status = "cancelled" if (n + day) % 7 == 0 else "delivered"
            orders.append((f"o{n}-{day}", customer, "s1" if (n + day) % 3 else "s2", created, 10.0 + n, status))
    write_lake(
        root,
        customers=[(c, T - timedelta(days=n, hours=3), "ES", "Madrid") for n, c in enumerate(CUSTOMERS, start=1)],
        stores=stores,
        orders=orders,
    )


@pytest.fixture(scope="module")
def lake_settings(make_namespace: Callable[[], Settings]) -> Settings:
    settings = make_namespace()
    build_lake(Path(settings.lake_uri))
    return settings


def admin_headers(settings: Settings, name: str, scope: str = "admin") -> dict[str, str]:
    token = ApiKeyRepository(session_factory(settings.database_url)).create(name, scope)  # type: ignore[arg-type]
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def api(lake_settings: Settings) -> Iterator[tuple[TestClient, dict[str, str]]]:
    headers = admin_headers(lake_settings, "preview-admin")
    with TestClient(create_app(lake_settings)) as client:
        yield client, headers


def field_of(response: Any) -> list[str]:
    assert response.status_code == 422, response.text
    return [d["field"] for d in response.json()["error"]["details"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"segment_type": "big_spenders", "params": {}}, "segment_type"),
        ({"segment_type": "new_customers", "params": {"max_days_since_signup": 999}}, "params.max_days_since_signup"),
        ({"segment_type": "new_customers", "params": {"max_days_since_signup": "7"}}, "params.max_days_since_signup"),
        ({"segment_type": "new_customers", "params": {}}, "params.max_days_since_signup"),
        ({"segment_type": "new_customers", "params": {"max_days_since_signup": 7, "colour": "red"}}, "params.colour"),
        ({"segment_type": "frequent_buyers", "params": {"min_orders": 1, "lookback_days": 7, "country": "Spain"}}, "params.country"),
        ({"segment_type": "new_customers", "params": {"max_days_since_signup": 7}, "partition": "2026-11-25T00:00"}, "partition"),
        ({"segment_type": "new_customers", "params": {"max_days_since_signup": 7}, "partition": "2026-11-25-13:00"}, "partition"),
        ({"segment_type": "new_customers", "params": {"max_days_since_signup": 7}, "partition": "2026-02-30"}, "partition"),
        ({"segment_type": "new_customers", "params": {"max_days_since_signup": 7}, "partition": "2025-12-31"}, "partition"),
        ({"segment_type": "new_customers", "params": {"max_days_since_signup": 7}, "partition": "2099-01-01"}, "partition"),
        ({"segment_type": "new_customers", "params": {"max_days_since_signup": 7}, "partition": 20261125}, "partition"),
        ({"segment_type": "new_customers", "params": {"max_days_since_signup": 7}, "name": "x"}, "name"),
        ({"params": {"max_days_since_signup": 7}}, "segment_type"),
    ],
)
def test_a_preview_is_validated_as_a_create_is_and_a_422_names_the_field(
    api: tuple[TestClient, dict[str, str]], body: dict[str, Any], field: str
) -> None:
    client, headers = api
    assert field in field_of(client.post("/v1/segments:preview", json=body, headers=headers))


def test_the_current_partition_is_not_closed_yet(api: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = api
    today = datetime.now(timezone.utc).date().isoformat()
    body = {"segment_type": "new_customers", "params": {"max_days_since_signup": 7}, "partition": today}
    response = client.post("/v1/segments:preview", json=body, headers=headers)
    assert field_of(response) == ["partition"] and "not a closed partition" in response.text


def test_previews_need_an_admin_key(api: tuple[TestClient, dict[str, str]], lake_settings: Settings) -> None:
    client, _ = api
    reader = admin_headers(lake_settings, "preview-reader", "read")
    body = {"segment_type": "new_customers", "params": {"max_days_since_signup": 7}}
    assert client.post("/v1/segments:preview", json=body).status_code == 401
    assert client.post("/v1/segments:preview", json=body, headers=reader).status_code == 403
    assert client.get("/v1/previews/prv_0123456789abcdef", headers=reader).status_code == 403


def test_a_request_answers_202_with_its_location_and_the_preview_reads_back(
    api: tuple[TestClient, dict[str, str]], lake_settings: Settings
) -> None:
    client, headers = api
    body = {"segment_type": "frequent_buyers", "params": {"min_orders": 2, "lookback_days": 30}}
    response = client.post("/v1/segments:preview", json=body, headers=headers)

    assert response.status_code == 202, response.text
    preview = response.json()
    assert preview["status"] == "queued" and preview["preview_id"].startswith("prv_")
    assert response.headers["Location"] == f"/v1/previews/{preview['preview_id']}"
    # The default partition: the latest closed one.
    latest = latest_closed_partition("daily", lake_settings.partitions_start_date, datetime.now(timezone.utc))
    read = client.get(response.headers["Location"], headers=headers)
    assert read.status_code == 200
    assert read.json() == preview
    assert {k: preview[k] for k in ("segment_type", "params", "partition", "member_count", "sample_customer_ids", "error")} == {
        "segment_type": "frequent_buyers",
        "params": body["params"],
        "partition": latest,
        "member_count": None,
        "sample_customer_ids": None,
        "error": None,
    }
    # Stored as a segment's params would be: defaults filled in.
    new = client.post(
        "/v1/segments:preview",
        json={"segment_type": "new_customers", "params": {"max_days_since_signup": 3}, "partition": PARTITION},
        headers=headers,
    ).json()
    assert new["params"] == {"max_days_since_signup": 3, "max_orders": 0} and new["partition"] == PARTITION
    assert PreviewRepository(session_factory(lake_settings.database_url)).get(new["preview_id"]).requested_by == "preview-admin"


@pytest.mark.parametrize("preview_id", ["prv_0123456789abcdef", "no such preview", "x" * 128, "%00"])
def test_an_unknown_preview_is_404(api: tuple[TestClient, dict[str, str]], preview_id: str) -> None:
    client, headers = api
    response = client.get(f"/v1/previews/{preview_id}", headers=headers)
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found"


def test_too_many_previews_waiting_answers_429(
    api: tuple[TestClient, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, headers = api
    monkeypatch.setattr(preview_service, "MAX_UNFINISHED", 1)
    body = {"segment_type": "new_customers", "params": {"max_days_since_signup": 7}}
    client.post("/v1/segments:preview", json=body, headers=headers)  # at least one waits
    response = client.post("/v1/segments:preview", json=body, headers=headers)
    assert response.status_code == 429 and response.headers["Retry-After"]


class PreviewPlatform:
    """A namespace with the small lake, its API, its Definitions and a Dagster test instance."""

    def __init__(self, settings: Settings, instance: dg.DagsterInstance, client: TestClient, headers: dict[str, str]) -> None:
        self.settings = settings
        self.instance = instance
        self.client = client
        self.headers = headers
        self.defs = build_definitions(settings)
        self.job = self.defs.resolve_job_def(PREVIEW_JOB)
        retention = timedelta(hours=settings.preview_retention_hours)
        self.sensor = preview_sensor(self.job, timeout_seconds=settings.preview_timeout_seconds, retention=retention)
        self.resources = {"config_store": ConfigStoreResource(database_url=settings.database_url)}

    def request(self, segment_type: str, params: dict[str, Any], partition: str | None = PARTITION) -> str:
        body = {"segment_type": segment_type, "params": params, "partition": partition}
        response = self.client.post("/v1/segments:preview", json=body, headers=self.headers)
        assert response.status_code == 202, response.text
        return response.json()["preview_id"]

    def get(self, preview_id: str) -> dict[str, Any]:
        response = self.client.get(f"/v1/previews/{preview_id}", headers=self.headers)
        assert response.status_code == 200, response.text
        return response.json()

    def tick(self, sensor: dg.SensorDefinition | None = None) -> Any:
        context = dg.build_sensor_context(instance=self.instance, resources=self.resources)
        return (sensor or self.sensor).evaluate_tick(context)

    def execute(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        tags = {**request.tags, "dagster/run_key": request.run_key}
        return self.job.execute_in_process(run_config=request.run_config, instance=self.instance, tags=tags, raise_on_error=False)


@pytest.fixture
def platform(make_namespace: Callable[[], Settings]) -> Iterator[PreviewPlatform]:
    settings = make_namespace()  # a queue of its own: no other test's previews
    build_lake(Path(settings.lake_uri))
    headers = admin_headers(settings, "preview-admin")
    with dg.instance_for_test() as instance, TestClient(create_app(settings)) as client:
        yield PreviewPlatform(settings, instance, client, headers)


def test_previews_run_through_the_preview_job_and_match_the_reference(platform: PreviewPlatform) -> None:
    ids = {name: platform.request(**spec) for name, spec in PREVIEWS.items()}
    no_raw = platform.request("frequent_buyers", {"min_orders": 1, "lookback_days": 7}, partition=NO_RAW_DATA)

    tick = platform.tick()
    [request] = tick.run_requests
    again = platform.tick()  # claimed: not asked for twice
    assert again.run_requests == []
    assert set(request.run_config["ops"]["compute_previews"]["config"]["preview_ids"]) == {*ids.values(), no_raw}
    assert request.tags["segmentation/run"] == "preview" and request.tags["dagster/priority"] == "-1"
    assert all(platform.get(i)["status"] == "queued" for i in ids.values())

    result = platform.execute(request)

    assert result.success  # a preview without raw data is the asker's problem, not a failed run
    reference = ReferenceLake(platform.settings.lake_uri)
    for name, spec in PREVIEWS.items():
        preview = platform.get(ids[name])
        expected = sorted(reference.members(spec["segment_type"], T, spec["params"]))
        assert preview["status"] == "done", preview["error"]
        assert preview["member_count"] == len(expected), name
        assert preview["sample_customer_ids"] == expected[:20], name
        assert preview["error"] is None and preview["finished_at"] is not None
    assert platform.get(ids["busy"])["member_count"] > 20
    assert platform.get(ids["nobody"])["member_count"] == 0
    stored = PreviewRepository(session_factory(platform.settings.database_url)).get(ids["busy"])
    assert stored.run_id == result.run_id and stored.started_at is not None

    failed = platform.get(no_raw)
    assert failed["status"] == "failed" and failed["member_count"] is None
    assert f"no raw data for partition {NO_RAW_DATA}" in failed["error"] and "no raw orders for 2026-06-01" in failed["error"]
    assert "orders run from 2026-11-" in failed["error"], failed["error"]

    # Nothing served, nothing written: no segment, no results folder, no index.
    assert not (Path(platform.settings.lake_uri) / "segments").exists()
    segments, _ = SegmentRepository(session_factory(platform.settings.database_url)).list(SegmentFilters(), after_id=None, limit=10)
    assert segments == []
    es = Elasticsearch(platform.settings.elasticsearch_url)
    assert es.indices.get(index=f"{platform.settings.index_prefix}-*", allow_no_indices=True, expand_wildcards="all").body == {}
    es.close()
    assert platform.tick().run_requests == []  # nothing left to do


def test_a_preview_of_a_lake_without_raw_tables_fails_saying_which(platform: PreviewPlatform) -> None:
    preview_id = platform.request("new_customers", {"max_days_since_signup": 7})
    for part in (Path(platform.settings.lake_uri) / "raw" / "stores").iterdir():
        part.unlink()
    (Path(platform.settings.lake_uri) / "raw" / "stores").rmdir()
    [request] = platform.tick().run_requests
    platform.execute(request)
    preview = platform.get(preview_id)
    assert preview["status"] == "failed" and "no raw stores table" in preview["error"], preview


def test_a_spark_failure_fails_the_run_and_each_preview_says_why(platform: PreviewPlatform) -> None:
    preview_id = platform.request("new_customers", {"max_days_since_signup": 7})
    # Orders that Spark cannot read: a file that is not Parquet, in the partition's own folder.
    (Path(platform.settings.lake_uri) / "raw" / "orders" / f"order_date={PARTITION}" / "part-0.parquet").write_bytes(b"not parquet")
    [request] = platform.tick().run_requests

    result = platform.execute(request)

    assert not result.success
    preview = platform.get(preview_id)
    assert preview["status"] == "failed" and preview["error"].startswith("the Spark job failed: "), preview
    assert "\n" not in preview["error"] and len(preview["error"]) < 600


def test_the_sensor_fails_previews_a_run_left_unfinished_and_requeues_lost_requests(platform: PreviewPlatform) -> None:
    store = PreviewRepository(session_factory(platform.settings.database_url))
    impatient = preview_sensor(platform.job, timeout_seconds=0, retention=timedelta(days=7))

    def claimed_run(params: dict[str, Any], status: dg.DagsterRunStatus) -> tuple[str, dg.DagsterRun]:
        preview_id = platform.request("new_customers", params)
        [request] = platform.tick().run_requests
        tags = {**request.tags, "dagster/run_key": request.run_key}
        return preview_id, platform.instance.create_run_for_job(platform.job, run_config=request.run_config, tags=tags, status=status)

    # A run that ended before it started its previews (canceled while queued, say).
    canceled, run = claimed_run({"max_days_since_signup": 7}, dg.DagsterRunStatus.CANCELED)
    platform.tick()
    assert platform.get(canceled)["status"] == "failed"
    assert f"the preview run {run.run_id} ended (canceled) before starting" in platform.get(canceled)["error"]

    # A run whose worker died while computing, then marked failed: its preview stays running until a tick.
    died, run = claimed_run({"max_days_since_signup": 8}, dg.DagsterRunStatus.STARTED)
    store.start([died], run.run_id)
    assert platform.tick().run_requests == [] and platform.get(died)["status"] == "running"
    platform.instance.report_run_failed(run)
    platform.tick()
    assert platform.get(died)["status"] == "failed"
    assert f"the preview run {run.run_id} ended (failure) before finishing" in platform.get(died)["error"]

    # Still running past the timeout (a run that hangs, or whose worker died unnoticed): failed as such.
    hung, run = claimed_run({"max_days_since_signup": 9}, dg.DagsterRunStatus.STARTED)
    store.start([hung], run.run_id)
    platform.tick(impatient)
    assert platform.get(hung)["status"] == "failed" and "not finished 0 s after the preview run" in platform.get(hung)["error"]
    # Its run, should it come back, cannot overwrite that.
    assert not store.finish(hung, run.run_id, member_count=1, sample_customer_ids=["c01"])

    # A run that started and never began its previews: failed once it has run past the timeout.
    never, run = claimed_run({"max_days_since_signup": 10}, dg.DagsterRunStatus.NOT_STARTED)
    start = dg.DagsterEvent(event_type_value=dg.DagsterEventType.RUN_START.value, job_name=run.job_name)
    platform.instance.report_dagster_event(start, run_id=run.run_id, timestamp=time.time() - 60)
    platform.tick()
    assert platform.get(never)["status"] == "queued"  # 60 s is within the default timeout
    platform.tick(impatient)
    assert platform.get(never)["status"] == "failed"
    assert "did not start this preview within 0 s" in platform.get(never)["error"]

    # A claim whose run never came to be: back in the queue after a while, then asked for again.
    lost = platform.request("new_customers", {"max_days_since_signup": 11})
    [first] = platform.tick().run_requests
    engine = create_engine(platform.settings.database_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE previews SET claimed_at = claimed_at - interval '10 minutes' WHERE id = :id"), {"id": lost})
    engine.dispose()
    [second] = platform.tick().run_requests
    assert second.run_key != first.run_key
    assert second.run_config["ops"]["compute_previews"]["config"]["preview_ids"] == [lost]


def test_no_new_claim_while_a_preview_run_waits_to_start(platform: PreviewPlatform) -> None:
    first = platform.request("new_customers", {"max_days_since_signup": 7})
    [request] = platform.tick().run_requests
    platform.instance.create_run_for_job(
        platform.job, run_config=request.run_config, tags={**request.tags, "dagster/run_key": request.run_key}, status=dg.DagsterRunStatus.NOT_STARTED
    )
    second, third = (platform.request("new_customers", {"max_days_since_signup": d}) for d in (8, 9))
    waiting = platform.tick()
    assert waiting.run_requests == [] and "waits to start" in waiting.skip_message
    store = PreviewRepository(session_factory(platform.settings.database_url))
    assert store.get(first).claim == request.run_key
    assert store.get(second).claim is None and store.get(third).claim is None


def test_finished_previews_are_kept_a_week_then_deleted_and_never_before_24_hours(platform: PreviewPlatform) -> None:
    store = PreviewRepository(session_factory(platform.settings.database_url))
    engine = create_engine(platform.settings.database_url)
    ages = {"8 days": None, "25 hours": None, "fresh": None}
    for age in ages:
        ages[age] = platform.request("new_customers", {"max_days_since_signup": 7})
    [request] = platform.tick().run_requests
    assert platform.execute(request).success
    queued_long_ago = platform.request("new_customers", {"max_days_since_signup": 7})
    with engine.begin() as connection:
        for age, interval in (("8 days", "8 days"), ("25 hours", "25 hours")):
            connection.execute(text(f"UPDATE previews SET requested_at = now() - interval '{interval}' WHERE id = :id"), {"id": ages[age]})
        connection.execute(text("UPDATE previews SET requested_at = now() - interval '30 days' WHERE id = :id"), {"id": queued_long_ago})
    platform.tick()
    engine.dispose()

    assert platform.client.get(f"/v1/previews/{ages['8 days']}", headers=platform.headers).status_code == 404
    assert platform.get(ages["25 hours"])["status"] == "done" and platform.get(ages["fresh"])["status"] == "done"
    assert store.get(queued_long_ago).status == "queued"  # unfinished ones are never deleted
    with pytest.raises(Exception, match="greater than or equal to 24"):
        Settings(preview_retention_hours=23)


def test_the_definitions_run_the_preview_sensor_every_5_seconds_by_default() -> None:
    defs = build_definitions(Settings())
    sensor = defs.resolve_sensor_def(PREVIEW_SENSOR)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING and sensor.minimum_interval_seconds == 5
    assert sensor.job_name == PREVIEW_JOB
    assert defs.resolve_job_def(PREVIEW_JOB).tags["segmentation/run"] == "preview"


def test_the_instance_runs_one_preview_at_a_time_and_does_not_limit_other_runs() -> None:
    run_queue = yaml.safe_load(_DAGSTER_YAML)["run_queue"]
    with dg.instance_for_test(overrides={"run_queue": run_queue}) as instance:
        config = instance.run_coordinator.get_run_queue_config()
    assert config.tag_concurrency_limits == [{"key": "segmentation/run", "value": "preview", "limit": 1}]
    assert config.max_concurrent_runs == 10  # Dagster's default: previews hold at most one of them


def test_the_api_process_loads_no_spark_nor_dagster_for_previews() -> None:
    script = (
        "import json, sys\n"
        "from api.main import create_app\nfrom api.previews.service import Previews\napp = create_app()\napp.openapi()\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    roots = {m.split(".")[0] for m in json.loads(run.stdout.strip().splitlines()[-1])}
    assert not roots & {"pyspark", "dagster", "dagster_pyspark"}
    assert "segmentation_assets.core.preview_job" not in json.loads(run.stdout.strip().splitlines()[-1])
