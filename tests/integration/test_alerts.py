"""Alerts for the engineers, on the real PostgreSQL and a local webhook: a failed run and a stale
alias each give one Slack-compatible POST; a webhook that fails or hangs costs one delivery tick at
most its budget, and the alert is posted once it recovers."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.test_utils import freeze_time
from pydantic import SecretStr
from sqlalchemy import text

from definitions import build_definitions, build_resources
from resources.config_store.alerts import AlertOutbox
from resources.config_store.database import engine_for, session_factory
from resources.settings import Settings
from segmentation_assets.alerts import (
    ALERT_DELIVERY_SENSOR,
    ALERT_WEBHOOK_URL_VARIABLE,
    CHECK_FAILURE_SENSOR,
    RUN_FAILURE_SENSOR,
    alert_webhook_resource,
)
from segmentation_assets.core.segment_types import SEGMENT_TYPES
from segmentation_assets.dagster_resources import AlertWebhookResource
from segmentation_assets.freshness import ALIAS_FRESHNESS_SENSOR
from segmentation_assets.index_and_alias import alias_key, index_key

pytestmark = pytest.mark.integration

# Where a Slack webhook keeps its secret: it must never reach an error message or a log.
SECRET = "xoxb-not-a-real-token"


class Receiver:
    """A webhook on 127.0.0.1 that records every JSON body POSTed to it and answers as told:
    `ok` (200), `fail` (500) or `hang` (nothing, until released)."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.received: list[tuple[str, dict[str, Any]]] = []  # (mode it answered in, body)
        self.content_types: list[str] = []
        self.paths: list[str] = []
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                mode = receiver.mode
                receiver.received.append((mode, body))
                receiver.paths.append(self.path)
                receiver.content_types.append(self.headers["Content-Type"])
                if mode == "hang":
                    receiver.release.wait(30)
                    return
                answer = b"ok" if mode == "ok" else b"internal error"
                self.send_response(200 if mode == "ok" else 500)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T0/B0/{SECRET}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered(self) -> list[dict[str, Any]]:
        return [body for mode, body in self.received if mode == "ok"]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


@pytest.fixture
def webhook(receiver: Receiver) -> AlertWebhookResource:
    return AlertWebhookResource(
        url=receiver.url,
        timeout_seconds=1.0,
        tick_budget_seconds=2.5,
        first_retry_seconds=1.0,
        max_retry_seconds=2.0,
        max_attempts=5,
    )


@pytest.fixture
def outbox(settings: Settings) -> AlertOutbox:
    with engine_for(settings.database_url).begin() as connection:
        connection.execute(text("DELETE FROM alerts"))
    return AlertOutbox(session_factory(settings.database_url))


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """Event storage ids global to the instance, as PostgreSQL's (the project's instance) are."""
    events = {"module": "dagster._core.storage.event_log", "class": "ConsolidatedSqliteEventLogStorage"}
    overrides = {"event_log_storage": {**events, "config": {"base_dir": str(tmp_path / "events")}}}
    with dg.instance_for_test(overrides=overrides, temp_dir=str(tmp_path)) as test_instance:
        yield test_instance


def rows(settings: Settings) -> list[dict[str, Any]]:
    with engine_for(settings.database_url).connect() as connection:
        found = connection.execute(text("SELECT *, next_attempt_at > now() AS waiting FROM alerts ORDER BY id"))
        return [dict(row._mapping) for row in found]


def tick(
    defs: dg.Definitions,
    name: str,
    instance: dg.DagsterInstance,
    resources: dict[str, Any],
    cursor: str | None = None,
) -> Any:
    with dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs, resources=resources) as context:
        return defs.resolve_sensor_def(name).evaluate_tick(context)


Deliver = Callable[[AlertWebhookResource], Any]


@pytest.fixture
def deliver(settings: Settings, instance: dg.DagsterInstance) -> Deliver:
    """One tick of the delivery sensor, with this webhook."""
    defs, config_store = build_definitions(settings), build_resources(settings)["config_store"]
    return lambda webhook: tick(
        defs, ALERT_DELIVERY_SENSOR, instance, {"config_store": config_store, "alert_webhook": webhook}
    )


def assert_slack_compatible(body: dict[str, Any]) -> None:
    assert set(body) == {"text", "blocks"} and isinstance(body["text"], str) and body["text"]
    assert body["blocks"][0]["type"] == "header" and len(body["blocks"][0]["text"]["text"]) <= 150
    for block in body["blocks"][1:]:
        assert block["type"] == "section"
        assert block.get("text", {}).get("text", "x") and len(block.get("fields", [])) <= 10


def test_a_failed_run_gives_one_post_naming_the_run(
    settings: Settings,
    outbox: AlertOutbox,
    receiver: Receiver,
    webhook: AlertWebhookResource,
    instance: dg.DagsterInstance,
    deliver: Deliver,
) -> None:
    defs = build_definitions(settings)
    resources = {**build_resources(settings), "alert_webhook": webhook}
    started = tick(defs, RUN_FAILURE_SENSOR, instance, resources)

    # No index was built for this partition, so the alias step fails for real.
    result = defs.resolve_job_def("refresh_high_spenders").execute_in_process(
        partition_key="2026-11-25", asset_selection=[alias_key("high_spenders")], instance=instance, raise_on_error=False
    )
    assert not result.success
    tick(defs, RUN_FAILURE_SENSOR, instance, resources, cursor=started.cursor)
    tick(defs, RUN_FAILURE_SENSOR, instance, resources, cursor=started.cursor)  # the same failure read again
    [alert] = rows(settings)
    assert (alert["kind"], alert["dedup_key"]) == ("run_failure", f"run_failure:{result.run_id}")

    deliver(webhook)

    [body] = receiver.delivered()
    assert receiver.content_types == ["application/json"]
    assert_slack_compatible(body)
    for fact in (result.run_id, "refresh_high_spenders", "2026-11-25", "high_spenders__alias"):
        assert fact in body["text"] and fact in json.dumps(body["blocks"])
    assert "no index was built for high_spenders partition 2026-11-25" in body["text"]
    [delivered] = rows(settings)
    assert delivered["delivered_at"] is not None and delivered["attempts"] == 0
    deliver(webhook)
    assert len(receiver.received) == 1  # delivered once


@pytest.mark.parametrize(
    ("granularity", "hour", "minute", "now", "due", "older"),
    [
        # Deadline 04:15: by then the day that closed at midnight is due.
        ("daily", 1, 15, datetime(2026, 11, 26, 5, 0), "2026-11-25", "2026-11-24"),
        # Refresh at 22:30, deadline 23:59: at 02:00 the day before yesterday is the one due.
        ("daily", 22, 30, datetime(2026, 11, 27, 2, 0), "2026-11-25", "2026-11-24"),
        # Deadline at minute 45: by 10:50 the hour 09:00-10:00 is due.
        ("hourly", 0, 15, datetime(2026, 11, 26, 10, 50), "2026-11-26-09:00", "2026-11-26-08:00"),
        # Refresh at minute 45, deadline 59: at 11:20 the 10:00 hour is not due yet (at 11:45).
        ("hourly", 0, 45, datetime(2026, 11, 26, 11, 20), "2026-11-26-09:00", "2026-11-26-08:00"),
    ],
)
def test_a_stale_alias_fails_its_freshness_check_and_gives_one_alert(
    settings: Settings,
    outbox: AlertOutbox,
    receiver: Receiver,
    webhook: AlertWebhookResource,
    instance: dg.DagsterInstance,
    deliver: Deliver,
    granularity: str,
    hour: int,
    minute: int,
    now: datetime,
    due: str,
    older: str,
) -> None:
    settings = settings.model_copy(
        update={"partition_granularity": granularity, "refresh_hour_of_day": hour, "refresh_minute_of_hour": minute}
    )
    defs = build_definitions(settings)
    resources = {**build_resources(settings), "alert_webhook": webhook}
    with freeze_time(now.replace(tzinfo=timezone.utc)):
        started = tick(defs, CHECK_FAILURE_SENSOR, instance, resources)
        # Every type publishes the window due, but high_spenders, stuck one window earlier.
        for name in SEGMENT_TYPES:
            partition = older if name == "high_spenders" else due
            instance.report_runless_asset_event(dg.AssetMaterialization(alias_key(name), partition=partition))

        [request] = tick(defs, ALIAS_FRESHNESS_SENSOR, instance, resources).run_requests
        assert set(request.asset_check_keys) == {dg.AssetCheckKey(alias_key(t), "freshness_check") for t in SEGMENT_TYPES}
        checks = defs.resolve_implicit_global_asset_job_def().get_subset(
            asset_selection=set(), asset_check_selection=set(request.asset_check_keys)
        )
        evaluations = checks.execute_in_process(instance=instance).get_asset_check_evaluations()
        assert {e.asset_key: e.passed for e in evaluations} == {alias_key(t): t != "high_spenders" for t in SEGMENT_TYPES}

        tick(defs, CHECK_FAILURE_SENSOR, instance, resources, cursor=started.cursor)

    [alert] = rows(settings)
    assert alert["kind"] == "check_failure"
    assert "high_spenders/alias" in alert["title"] and "freshness_check" in alert["title"]
    assert due in alert["message"]
    deliver(webhook)
    [body] = receiver.delivered()
    assert_slack_compatible(body)
    assert "high_spenders/alias" in body["text"] and due in body["text"]


def test_only_failed_checks_of_severity_error_are_alerted(
    settings: Settings, outbox: AlertOutbox, instance: dg.DagsterInstance
) -> None:
    defs = build_definitions(settings)
    resources = build_resources(settings)
    started = tick(defs, CHECK_FAILURE_SENSOR, instance, resources)
    index = index_key("new_customers")
    for check, passed, severity in [
        ("complete", True, dg.AssetCheckSeverity.ERROR),
        ("no_failed_chunks", False, dg.AssetCheckSeverity.WARN),
        ("complete", False, dg.AssetCheckSeverity.ERROR),
    ]:
        evaluation = dg.AssetCheckEvaluation(
            asset_key=index, check_name=check, passed=passed, severity=severity, description=f"{check} {passed}"
        )
        instance.report_runless_asset_event(evaluation)
    tick(defs, CHECK_FAILURE_SENSOR, instance, resources, cursor=started.cursor)
    [alert] = rows(settings)
    assert (alert["title"], alert["message"]) == ("Check failed: new_customers/index complete", "complete False")


def test_a_failing_then_hanging_webhook_costs_one_budget_per_tick_and_the_alerts_go_out_later(
    settings: Settings,
    outbox: AlertOutbox,
    receiver: Receiver,
    webhook: AlertWebhookResource,
    deliver: Deliver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    assert outbox.enqueue(dedup_key="a", kind="test", title="Alert A", message="first", payload={})

    receiver.mode = "fail"
    deliver(webhook)
    [a] = rows(settings)
    assert len(receiver.received) == 1
    assert (a["attempts"], a["delivered_at"], a["given_up_at"]) == (1, None, None)
    assert a["last_error"].startswith("HTTP 500") and a["waiting"]
    deliver(webhook)
    assert len(receiver.received) == 1  # waiting out its backoff: not posted again yet

    assert outbox.enqueue(dedup_key="b", kind="test", title="Alert B", message="second", payload={})
    assert outbox.enqueue(dedup_key="c", kind="test", title="Alert C", message="third", payload={})
    time.sleep(webhook.first_retry_seconds + 0.1)  # A is due again
    receiver.mode = "hang"
    started = time.monotonic()
    deliver(webhook)
    elapsed = time.monotonic() - started
    assert webhook.timeout_seconds <= elapsed < webhook.tick_budget_seconds
    assert len(receiver.received) == 2  # the first that hung ended the tick: the others wait
    pending = rows(settings)
    assert all(r["delivered_at"] is None for r in pending)
    assert sum(r["attempts"] for r in pending) == 2
    assert [r["last_error"] for r in pending].count("no answer within 1 s") == 1

    receiver.mode = "ok"
    receiver.release.set()
    time.sleep(webhook.max_retry_seconds + 0.1)  # every backoff over
    deliver(webhook)
    assert sorted(body["blocks"][0]["text"]["text"] for body in receiver.delivered()) == ["Alert A", "Alert B", "Alert C"]
    assert all(r["delivered_at"] is not None for r in rows(settings))
    for r in rows(settings):
        assert SECRET not in (r["last_error"] or "")
    assert SECRET not in caplog.text


def test_delivery_gives_up_after_the_last_attempt_and_keeps_the_row(
    settings: Settings, outbox: AlertOutbox, receiver: Receiver, deliver: Deliver
) -> None:
    webhook = AlertWebhookResource(
        url=receiver.url, timeout_seconds=1.0, tick_budget_seconds=2.0, first_retry_seconds=0.01, max_attempts=2
    )
    outbox.enqueue(dedup_key="x", kind="test", title="Alert X", message="never accepted", payload={})
    receiver.mode = "fail"
    for _ in range(4):
        deliver(webhook)
        time.sleep(0.05)
    [x] = rows(settings)
    assert len(receiver.received) == 2
    assert x["attempts"] == 2 and x["given_up_at"] is not None and x["delivered_at"] is None


def test_enqueue_is_idempotent_on_the_dedup_key(settings: Settings, outbox: AlertOutbox) -> None:
    assert outbox.enqueue(dedup_key="run_failure:r1", kind="run_failure", title="One", message="m", payload={"run_id": "r1"})
    assert not outbox.enqueue(dedup_key="run_failure:r1", kind="run_failure", title="Two", message="n", payload={})
    [alert] = rows(settings)
    assert (alert["title"], alert["payload"]) == ("One", {"run_id": "r1"})


def test_a_claimed_alert_is_leased_from_a_second_deliverer(settings: Settings, outbox: AlertOutbox) -> None:
    outbox.enqueue(dedup_key="1", kind="test", title="One", message="m", payload={})
    outbox.enqueue(dedup_key="2", kind="test", title="Two", message="m", payload={})
    first = outbox.claim_due(lease_seconds=0.5)
    second = outbox.claim_due(lease_seconds=60)
    assert first is not None and second is not None and first.id != second.id
    assert outbox.claim_due(lease_seconds=60) is None
    time.sleep(0.6)  # the first deliverer died: its alert comes back once the lease ends
    again = outbox.claim_due(lease_seconds=60)
    assert again is not None and again.id == first.id


def test_without_a_url_alerts_are_only_recorded(settings: Settings, outbox: AlertOutbox, deliver: Deliver) -> None:
    outbox.enqueue(dedup_key="y", kind="test", title="Alert Y", message="kept", payload={})
    result = deliver(AlertWebhookResource(url=""))
    assert "only recorded" in result.skip_message
    [y] = rows(settings)
    assert (y["attempts"], y["delivered_at"]) == (0, None)


def test_the_url_reaches_dagster_as_a_variable_name_and_is_used(
    settings: Settings, outbox: AlertOutbox, receiver: Receiver, deliver: Deliver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ALERT_WEBHOOK_URL_VARIABLE, receiver.url)
    from_environment = Settings(database_url=settings.database_url)
    assert SECRET not in repr(from_environment) and SECRET not in str(from_environment.model_dump())
    made_in_code = settings.model_copy(update={"alert_webhook_url": SecretStr(receiver.url.replace("/B0/", "/B1/"))})
    # What the UI shows of a resource's config: the variable's name.
    by_deployment, by_own_name = alert_webhook_resource(from_environment), alert_webhook_resource(made_in_code)
    assert isinstance(by_deployment.url, dg.EnvVar) and by_deployment.url == ALERT_WEBHOOK_URL_VARIABLE
    assert isinstance(by_own_name.url, dg.EnvVar) and by_own_name.url.startswith(f"{ALERT_WEBHOOK_URL_VARIABLE}_")
    assert alert_webhook_resource(settings).url == ""

    for name, resource in (("Alert Z", by_deployment), ("Alert W", by_own_name)):
        outbox.enqueue(dedup_key=name, kind="test", title=name, message="through the variable", payload={})
        deliver(resource)
    assert [body["blocks"][0]["text"]["text"] for body in receiver.delivered()] == ["Alert Z", "Alert W"]
    assert receiver.paths == [f"/services/T0/B0/{SECRET}", f"/services/T0/B1/{SECRET}"]
