"""Dagster's run logs (its events and `context.log`) as the platform's log lines: one JSON object
per line on stderr, with `timestamp`, `level`, `logger`, `event`, and the run's `run_id`, `job`,
`step` and `dagster_event` (the event's type), secrets masked (resources/json_logs.py).

Dagster logs a run through the loggers its run config names; when it names none, as for a run
launched from the UI, a backfill, a sensor or a schedule, through a fallback that writes colored
text. Naming a logger on the `Definitions` does not change that (it is used only once named in
run config), nor does any instance setting: `python_logs` in dagster.yaml adds handlers beside the
fallback, and its `python_log_level` would also drop `context.log` messages below it from the
event log. So the fallback itself is pointed at the platform's logger, in every process that
imports definitions.py: `segmentation run`, and the worker process of every run the daemon or the
UI launches. tests/integration/test_dagster_run_logs.py fails if a Dagster upgrade undoes this.
"""

from __future__ import annotations

import logging
from typing import Any

import dagster as dg
import dagster._loggers

from resources.json_logs import platform_handler


def dagster_fields(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: a Dagster record's own message and its run, job, step and event type."""
    meta = getattr(event.get("_record"), "dagster_meta", None)
    if not meta:
        return event
    event["event"] = meta.get("orig_message", event["event"])
    event["run_id"] = meta.get("run_id")
    event["job"] = meta.get("job_name")
    if meta.get("step_key"):
        event["step"] = meta["step_key"]
    if (dagster_event := meta.get("dagster_event")) is not None:
        event["dagster_event"] = dagster_event.event_type.name  # RUN_START, STEP_FAILURE, ...
    return event


@dg.logger(
    {
        "log_level": dg.Field(str, is_required=False, default_value="DEBUG", description="The logger's threshold."),
        "name": dg.Field(str, is_required=False, default_value="dagster", description="The `logger` of its lines."),
    },
    description="The run's events and messages as the platform's log lines (JSON, one object per line, on stderr).",
)
def platform_console_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    # A logger of its own, outside the `logging` tree: Dagster captures the `dagster` logger's records.
    config = init_context.logger_config
    logger = logging.Logger(config["name"], level=str(config["log_level"]).upper())
    logger.addHandler(platform_handler(pre_chain=[dagster_fields]))
    return logger


def log_runs_as_platform_lines() -> None:
    """Every run of this process that names no logger logs through `platform_console_logger`."""
    dagster._loggers.colored_console_logger = platform_console_logger
