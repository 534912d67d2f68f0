"""Alerts for the engineers: failed runs and failed checks, posted to a Slack-compatible webhook.

Two sensors only record alerts, in the config store's outbox (one per event: re-reading an event
never alerts twice); a third posts them. So a webhook that fails or hangs delays no run and no
other sensor: it costs the delivery sensor at most its time budget per tick, and the alert is
posted again later (resources/webhook.py, resources/config_store/alerts.py).
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from resources.settings import Settings
from resources.webhook import deliver_due_alerts
from segmentation_assets.dagster_resources import AlertWebhookResource, ConfigStoreResource
from segmentation_assets.secret_settings import secret_setting

RUN_FAILURE_SENSOR = "run_failure_alert_sensor"
CHECK_FAILURE_SENSOR = "check_failure_alert_sensor"
ALERT_DELIVERY_SENSOR = "alert_delivery_sensor"
ALERT_WEBHOOK_URL_VARIABLE = "SEGMENTATION_ALERT_WEBHOOK_URL"

# Check evaluations read per tick; the rest on the next ones.
_EVALUATIONS_PER_TICK = 500
_ERROR_CHARACTERS = 500
_CHECK_EVALUATION = dg.DagsterEventType.ASSET_CHECK_EVALUATION


def alert_webhook_resource(settings: Settings) -> AlertWebhookResource:
    """The URL reaches Dagster as a `dg.EnvVar`, like the other secrets (secret_settings.py)."""
    if not settings.alert_webhook_url.get_secret_value():
        return AlertWebhookResource(url="")  # nothing to hide: alerts are only recorded
    return AlertWebhookResource(url=secret_setting(settings, "alert_webhook_url"))


def _partition(run: dg.DagsterRun) -> str | None:
    if partition := run.tags.get("dagster/partition"):
        return partition
    start, end = run.tags.get("dagster/asset_partition_range_start"), run.tags.get("dagster/asset_partition_range_end")
    return f"{start}...{end}" if start and end else None


def _step_error(event: dg.DagsterEvent) -> str:
    """What a failed step said: a `dg.Failure`'s description, else the exception and its causes
    (under Dagster's own wrapper, which only says that the step failed)."""
    data = event.step_failure_data
    if data.user_failure_data is not None and data.user_failure_data.description:
        return data.user_failure_data.description[:_ERROR_CHARACTERS]
    error, messages = data.error, []
    if error is not None and error.cls_name == "DagsterExecutionStepExecutionError" and error.cause is not None:
        error = error.cause
    while error is not None:
        messages.append(error.message.strip())
        error = error.cause
    return "; caused by ".join(messages)[:_ERROR_CHARACTERS] or "no error recorded"


@dg.run_failure_sensor(
    name=RUN_FAILURE_SENSOR,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Records an alert for every failed run of this code location's jobs (the asset jobs too).",
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext, config_store: ConfigStoreResource) -> None:
    run = context.dagster_run
    errors = {event.step_key: _step_error(event) for event in context.get_step_failure_events()}
    partition = _partition(run)
    config_store.alert_outbox().enqueue(
        dedup_key=f"run_failure:{run.run_id}",
        kind="run_failure",
        title=f"Run failed: {run.job_name}" + (f", partition {partition}" if partition else ""),
        message="\n".join(f"{step}: {error}" for step, error in errors.items()) or context.failure_event.message or "",
        payload={"job": run.job_name, "run_id": run.run_id, "partition": partition, "failed_steps": list(errors)},
    )


def _check_alert(record: dg.EventLogRecord) -> dict[str, Any]:
    evaluation = record.event_log_entry.dagster_event.asset_check_evaluation_data
    asset = evaluation.asset_key.to_user_string()
    return {
        "dedup_key": f"check_failure:{record.storage_id}",
        "kind": "check_failure",
        "title": f"Check failed: {asset} {evaluation.check_name}",
        "message": evaluation.description or f"The {evaluation.check_name} check of {asset} did not pass.",
        "payload": {
            "asset": asset,
            "check": evaluation.check_name,
            "partition": evaluation.partition,
            "run_id": record.event_log_entry.run_id,
        },
    }


@dg.sensor(
    name=CHECK_FAILURE_SENSOR,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Records an alert for every failed check of severity ERROR: the aliases' freshness "
    "checks, and an index that does not match its calculation (`complete`).",
)
def check_failure_alert_sensor(context: dg.SensorEvaluationContext, config_store: ConfigStoreResource) -> dg.SkipReason:
    # Storage ids are global in the project's instance (PostgreSQL); a run-sharded SQLite one refuses this.
    storage = context.instance.event_log_storage
    if context.cursor is None:
        # From now on: a new deployment does not replay the failures of the past.
        latest = storage.get_event_records(dg.EventRecordsFilter(_CHECK_EVALUATION), limit=1)
        context.update_cursor(str(latest[0].storage_id if latest else 0))
        return dg.SkipReason("Watching check evaluations from now on.")
    records = storage.get_event_records(
        dg.EventRecordsFilter(_CHECK_EVALUATION, after_cursor=int(context.cursor)),
        limit=_EVALUATIONS_PER_TICK,
        ascending=True,
    )
    outbox = config_store.alert_outbox()
    alerted = 0
    for record in records:
        evaluation = record.event_log_entry.dagster_event.asset_check_evaluation_data
        if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
            alerted += outbox.enqueue(**_check_alert(record))
        context.update_cursor(str(record.storage_id))
    return dg.SkipReason(f"{len(records)} check evaluations read, {alerted} failed ones alerted.")


@dg.sensor(
    name=ALERT_DELIVERY_SENSOR,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Posts the recorded alerts to the webhook; retries a failed post later, waiting longer each time.",
)
def alert_delivery_sensor(config_store: ConfigStoreResource, alert_webhook: AlertWebhookResource) -> dg.SkipReason:
    if not alert_webhook.url:
        return dg.SkipReason(
            f"No webhook ({ALERT_WEBHOOK_URL_VARIABLE} is empty): alerts are only recorded, in the config store's "
            "`alerts` table."
        )
    report = deliver_due_alerts(
        config_store.alert_outbox(),
        alert_webhook.url,
        timeout_seconds=alert_webhook.timeout_seconds,
        budget_seconds=alert_webhook.tick_budget_seconds,
        policy=alert_webhook.retry_policy(),
    )
    return dg.SkipReason(str(report))


def alert_sensors() -> list[dg.SensorDefinition]:
    return [run_failure_alert_sensor, check_failure_alert_sensor, alert_delivery_sensor]
