"""Refresh on change on the real PostgreSQL: the sensor driven tick by tick on a clock of the test's
own, against a Dagster instance of its own; then once end to end, the run it asks for executed and
its segment served by the API."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, create_engine, text

from api.main import create_app
from definitions import build_definitions
from resources.config_store.api_keys import ApiKeyRepository
from resources.config_store.database import session_factory
from resources.config_store.segments import Segment, SegmentRepository
from resources.settings import Settings
from segmentation_assets.core.segment_types import SEGMENT_TYPES
from segmentation_assets.dagster_resources import ConfigStoreResource
from segmentation_assets.partitions import segment_partitions
from segmentation_assets.refresh import refresh_on_change_sensor
from segmentation_assets.schedules import refresh_job
from tests.lake_builder import write_lake

pytestmark = pytest.mark.integration

# The sensor's clock starts here: the latest window closed is the day before.
START = datetime(2026, 11, 26, 10, tzinfo=timezone.utc)
LATEST_CLOSED = "2026-11-25"
T = datetime(2026, 11, 26, tzinfo=timezone.utc)  # the end of LATEST_CLOSED's window
TICK = 15.0  # as the daemon evaluates it
SETTLE, MAX_WAIT = 30.0, 300.0
PARAMS = {
    "new_customers": {"max_days_since_signup": 30},
    "frequent_buyers": {"min_orders": 2, "lookback_days": 30},
}


class SensorDriver:
    """The refresh sensor, ticked by hand: each tick moves its clock on, evaluates it with the
    previous tick's cursor, and keeps the new one, as the daemon does."""

    def __init__(self, settings: Settings, instance: dg.DagsterInstance | None = None) -> None:
        self.now = START.timestamp()
        partitions = segment_partitions("daily", settings.partitions_start_date)
        jobs = {t: refresh_job(t, partitions) for t in SEGMENT_TYPES}
        self.sensor = refresh_on_change_sensor(
            jobs, partitions, settle_seconds=SETTLE, max_wait_seconds=MAX_WAIT, clock=lambda: self.now
        )
        self.instance = instance or dg.DagsterInstance.ephemeral()
        self.resources = {"config_store": ConfigStoreResource(database_url=settings.database_url)}
        # The project's assets, with this sensor in place of its own (partitioned requests are
        # resolved against the definitions, as the daemon does).
        project = build_definitions(settings)
        self.definitions = dg.Definitions(assets=project.assets, sensors=[self.sensor], resources=project.resources)
        self.cursor: str | None = None
        self.started = self.now

    def tick(self, after: float = TICK) -> Any:
        self.now += after
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources=self.resources, definitions=self.definitions
        )
        data = self.sensor.evaluate_tick(context)
        self.cursor = data.cursor
        return data

    def ticks(self, seconds: float) -> list[tuple[float, dg.RunRequest]]:
        """Every request made while ticking for `seconds`, with when (seconds since the first tick)."""
        made = []
        for _ in range(int(seconds // TICK)):
            made += [(self.now - self.started, r) for r in self.tick().run_requests]
        return made


def repository(settings: Settings) -> SegmentRepository:
    return SegmentRepository(session_factory(settings.database_url))


def make(segments: SegmentRepository, segment_type: str, **fields: Any) -> Segment:
    values = {"name": f"{segment_type} {uuid.uuid4().hex[:6]}", "params": PARAMS[segment_type], "status": "active"} | fields
    return segments.create(segment_type=segment_type, targeting={}, labels={}, description=None, actor="test", **values)


def edit(segments: SegmentRepository, segment: Segment, **changes: Any) -> Segment:
    return segments.update(segment.id, expected_version=segment.version, changes=changes, actor="test")


def jobs_of(requests: list[tuple[float, dg.RunRequest]]) -> list[str]:
    return sorted(r.job_name for _, r in requests)


def insert_with_sql(connection: Connection, segment_type: str, params: Any) -> str:
    """A segment written around the API (so never validated), with its audit entry, as the
    repository writes them."""
    segment_id = f"seg_sql_{uuid.uuid4().hex[:8]}"
    connection.execute(
        text(
            "INSERT INTO segments (id, name, segment_type, params, labels, status, version, created_by, updated_by) "
            "VALUES (:id, :id, :type, CAST(:params AS jsonb), '{}', 'active', 1, 'sql', 'sql')"
        ),
        {"id": segment_id, "type": segment_type, "params": json.dumps(params)},
    )
    connection.execute(
        text("INSERT INTO segment_audit (segment_id, version, actor, action, after) VALUES (:id, 1, 'sql', 'create', '{}')"),
        {"id": segment_id},
    )
    return segment_id


def test_the_first_tick_records_where_the_configs_stand_and_requests_nothing(settings: Settings) -> None:
    make(repository(settings), "new_customers")  # before the sensor ever ran: left to the schedule
    sensor = SensorDriver(settings)

    first = sensor.tick()

    assert first.run_requests == [] and first.cursor is not None
    assert sensor.ticks(MAX_WAIT + 60) == []


def test_a_created_segment_asks_for_one_run_of_its_type_for_the_latest_closed_partition_once_settled(
    settings: Settings,
) -> None:
    sensor = SensorDriver(settings)
    sensor.tick()
    created = make(repository(settings), "new_customers")

    seen = sensor.tick()  # the tick that sees it: quiet for 0 s
    quiet_15 = sensor.tick()
    quiet_30 = sensor.tick()

    assert seen.run_requests == [] and quiet_15.run_requests == []
    [request] = quiet_30.run_requests
    assert request.job_name == "refresh_new_customers"
    assert request.partition_key == LATEST_CLOSED
    assert created.id in request.tags["segmentation/changes"]
    assert sensor.ticks(MAX_WAIT + 60) == []  # asked for once


def test_a_burst_of_edits_across_two_types_costs_one_run_per_type(settings: Settings) -> None:
    segments = repository(settings)
    made = [make(segments, "new_customers"), make(segments, "new_customers"), make(segments, "frequent_buyers")]
    sensor = SensorDriver(settings)
    sensor.tick()
    edits = {"new_customers": 0, "frequent_buyers": 0}

    for n in range(10):  # ten edits, 8 s apart: never quiet for SETTLE
        segment = made[n % 3]
        made[n % 3] = edit(segments, segment, name=f"{segment.name} #{n}")
        edits[segment.segment_type] += 1
        if n % 2:
            sensor.tick(after=2 * 8.0)
    requests = sensor.ticks(SETTLE + 90)

    assert edits == {"new_customers": 7, "frequent_buyers": 3}
    assert jobs_of(requests) == ["refresh_frequent_buyers", "refresh_new_customers"]
    for _, request in requests:
        assert request.partition_key == LATEST_CLOSED
        assert request.tags["segmentation/changes"].startswith(f"{edits[request.job_name.removeprefix('refresh_')]} change(s)")


def test_edits_that_never_settle_are_asked_for_after_the_max_wait(settings: Settings) -> None:
    segments = repository(settings)
    segment = make(segments, "new_customers")
    sensor = SensorDriver(settings)
    sensor.tick()

    segment = edit(segments, segment, name="edit 0")
    assert sensor.tick().run_requests == []
    first_seen = sensor.now
    requests = []
    for n in range(1, 30):  # an edit every tick: 435 s of them
        segment = edit(segments, segment, name=f"edit {n}")
        asked = sensor.tick().run_requests
        requests += [(sensor.now - first_seen, r) for r in asked]

    assert requests, "never asked for"
    waited, request = requests[0]
    assert MAX_WAIT <= waited < MAX_WAIT + TICK and request.job_name == "refresh_new_customers"
    assert len(requests) == 1  # the edits after it wait for a max wait of their own


@pytest.mark.parametrize("step", ["pause", "resume", "archive"])
def test_a_pause_a_resume_and_an_archive_each_ask_for_a_run(settings: Settings, step: str) -> None:
    segments = repository(settings)
    segment = make(segments, "frequent_buyers", status="active" if step != "resume" else "paused")
    sensor = SensorDriver(settings)
    sensor.tick()

    if step == "archive":
        segments.archive(segment.id, actor="test")
    else:
        edit(segments, segment, status="paused" if step == "pause" else "active")
    requests = sensor.ticks(SETTLE + 60)

    assert jobs_of(requests) == ["refresh_frequent_buyers"]
    assert segment.id in requests[0][1].tags["segmentation/changes"]


@pytest.mark.parametrize("status", [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTED])
def test_no_second_run_is_asked_for_while_one_of_the_type_is_in_progress(settings: Settings, status) -> None:
    instance = dg.DagsterInstance.ephemeral()
    defs = build_definitions(settings)
    segments = repository(settings)
    sensor = SensorDriver(settings, instance)
    sensor.tick()
    # Another type's run in progress holds nothing back.
    instance.create_run_for_job(defs.resolve_job_def("refresh_high_spenders"), status=dg.DagsterRunStatus.STARTED)

    first = make(segments, "new_customers")
    [(_, asked)] = sensor.ticks(SETTLE + 30)
    running = instance.create_run_for_job(
        defs.resolve_job_def(asked.job_name), status=status, tags={"dagster/partition": asked.partition_key}
    )
    second = make(segments, "new_customers")  # after that run started: a run of its own, after it
    held_back = sensor.ticks(MAX_WAIT + 60)
    instance.report_run_failed(running)
    [(_, after)] = sensor.ticks(TICK)

    assert first.id in asked.tags["segmentation/changes"]
    assert held_back == []
    assert after.job_name == "refresh_new_customers" and after.partition_key == LATEST_CLOSED
    assert second.id in after.tags["segmentation/changes"] and first.id not in after.tags["segmentation/changes"]
    assert after.run_key != asked.run_key


def test_broken_configs_are_reported_and_skipped_without_failing_the_tick(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = create_engine(settings.database_url)
    sensor = SensorDriver(settings)
    sensor.tick()
    broken = {
        "out of range": ({"max_days_since_signup": 999}, "max_days_since_signup"),
        "unknown parameter": ({"max_days_since_signup": 7, "colour": "red"}, "colour"),
        "not an object": ("seven days", "params"),
        "null": (None, "params"),
    }
    with engine.begin() as connection:
        ids = {name: insert_with_sql(connection, "new_customers", params) for name, (params, _) in broken.items()}

    before = sensor.cursor
    seen = sensor.tick()
    sensor.cursor, again = before, sensor.tick(after=0)  # as if that tick had failed and were retried
    later = sensor.ticks(MAX_WAIT + 60)

    assert seen.run_requests == [] and again.run_requests == [] and later == []
    for name, (_, field) in broken.items():
        [problem] = [p for p in seen.skip_message.split("; ") if ids[name] in p]  # one part per broken config
        assert "broken params" in problem and f"{field}:" in problem, problem
    assert alerts(engine) == {f"broken_config:{i}:1": "broken_config" for i in ids.values()}  # once each

    # Beside a sound change the broken one is still reported (in the log), and the sound one asks for the run.
    sound = make(repository(settings), "new_customers")
    with engine.begin() as connection:
        another = insert_with_sql(connection, "new_customers", {"max_orders": 3})
    capsys.readouterr()
    requests = sensor.ticks(SETTLE + 30)
    log = capsys.readouterr().err  # where a tick's log goes outside the daemon

    [(_, request)] = requests
    assert sound.id in request.tags["segmentation/changes"] and another not in request.tags["segmentation/changes"]
    [reported] = [line for line in log.splitlines() if another in line]
    assert "WARNING" in reported and "max_days_since_signup: Field required" in reported, log
    assert f"broken_config:{another}:1" in alerts(engine) and not any(sound.id in key for key in alerts(engine))
    engine.dispose()


def alerts(engine: Any) -> dict[str, str]:
    """The outbox's alerts about segment configs: dedup key -> kind."""
    with engine.connect() as connection:
        return dict(connection.execute(text("SELECT dedup_key, kind FROM alerts WHERE dedup_key LIKE 'broken_config:%'")).all())


def test_a_change_that_commits_behind_the_audit_cursor_is_not_missed(settings: Settings) -> None:
    """Audit ids are handed out at insert: a transaction holding a smaller one can commit after a
    larger one was read. The sensor still asks for the run it needs."""
    engine = create_engine(settings.database_url)
    sensor = SensorDriver(settings)
    sensor.tick()
    with engine.connect() as late, engine.connect() as early:
        late_transaction = late.begin()
        late_id = insert_with_sql(late, "frequent_buyers", PARAMS["frequent_buyers"])
        with early.begin():
            early_id = insert_with_sql(early, "frequent_buyers", PARAMS["frequent_buyers"])
        for_early = sensor.ticks(SETTLE + 30)
        late_transaction.commit()
    for_late = sensor.ticks(SETTLE + 30)
    with engine.connect() as connection:
        audit_ids = dict(connection.execute(text("SELECT segment_id, id FROM segment_audit WHERE segment_id IN (:a, :b)"), {"a": late_id, "b": early_id}).all())
    engine.dispose()

    assert audit_ids[late_id] < audit_ids[early_id]  # the late one's id was below what the sensor had read
    assert jobs_of(for_early) == ["refresh_frequent_buyers"] and early_id in for_early[0][1].tags["segmentation/changes"]
    assert jobs_of(for_late) == ["refresh_frequent_buyers"]
    assert "unnamed" in for_late[0][1].tags["segmentation/changes"]


def _wait_for(condition: Callable[[], bool], seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.25)
    return condition()


def test_end_to_end_a_segment_created_through_the_api_is_served_after_the_run_the_sensor_asks_for(
    make_namespace: Callable[[], Settings], tmp_path: Path
) -> None:
    settings = make_namespace().model_copy(update={"state_dir": tmp_path / "state"})  # no other test's segments
    customers = [f"c{n}" for n in range(1, 40)]
    write_lake(
        Path(settings.lake_uri),
        customers=[(c, T - n * timedelta(days=1), "ES", "Madrid") for n, c in enumerate(customers, start=1)],
        stores=[("s1", "Farmacia Sol", "pharmacy", "Madrid", "ES")],
        orders=[("o1", "c2", "s1", T - timedelta(days=1), 10.0, "delivered")],
    )
    # Signed up in [T - 10 days, T) with no delivered order: c1..c10 but c2.
    expected = {f"c{n}" for n in range(1, 11)} - {"c2"}
    keys = ApiKeyRepository(session_factory(settings.database_url))
    admin = {"Authorization": f"Bearer {keys.create('refresh-admin', 'admin')}"}
    reader = {"Authorization": f"Bearer {keys.create('refresh-reader', 'read')}"}
    instance = dg.DagsterInstance.ephemeral()
    defs = build_definitions(settings)
    sensor = SensorDriver(settings, instance)
    sensor.tick()

    def run(request: dg.RunRequest) -> None:
        job = defs.resolve_job_def(request.job_name)
        result = job.execute_in_process(partition_key=request.partition_key, instance=instance, tags=request.tags)
        assert result.success

    def served_to(client: TestClient, customer_id: str) -> set[str]:
        response = client.get(f"/v1/customers/{customer_id}/segments", headers=reader)
        assert response.status_code == 200, response.text
        return {s["segment_id"] for s in response.json()["segments"]}

    with TestClient(create_app(settings)) as client:
        body = {"name": "ten days, no order", "segment_type": "new_customers", "params": {"max_days_since_signup": 10}}
        created = client.post("/v1/segments", json=body, headers=admin)
        assert created.status_code == 201, created.text
        segment_id = created.json()["id"]

        [(_, request)] = sensor.ticks(SETTLE + 30)
        assert (request.job_name, request.partition_key) == ("refresh_new_customers", LATEST_CLOSED)
        run(request)

        def stats_served() -> bool:
            response = client.get(f"/v1/segments/{segment_id}/stats", headers=reader)
            return response.status_code == 200 and response.json()["member_count"] == len(expected)

        assert _wait_for(stats_served), client.get(f"/v1/segments/{segment_id}/stats", headers=reader).text
        assert _wait_for(lambda: all((segment_id in served_to(client, c)) == (c in expected) for c in customers))

        # Paused, it leaves lookups after the next run the sensor asks for.
        paused = client.patch(f"/v1/segments/{segment_id}", json={"status": "paused"}, headers=admin | {"If-Match": "1"})
        assert paused.status_code == 200, paused.text
        [(_, request)] = sensor.ticks(SETTLE + 30)
        run(request)
        assert _wait_for(lambda: not any(segment_id in served_to(client, c) for c in expected))
