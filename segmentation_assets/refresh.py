"""Refresh on change: a sensor that recomputes a segment type soon after one of its configs changes.

The promise (docs/operations.md): while the daemon runs, a segment that is created, edited, paused,
resumed or archived is reflected in lookups, stats and history within 10 minutes, and a burst of
changes costs one run per type, not one per change.

Seeing a change. Each tick reads, in one snapshot of the config store, a counter per segment type:
its rows plus the sum of their versions (`SegmentRepository.changes_since`). Every committed change
raises its type's counter and nothing lowers it, so comparing counters with the cursor's cannot
miss a change. The audit entries after the last one read name the changed segments, for the report
and to tell broken configs apart. Audit ids alone could miss a change: a sequence hands them out
at insert, so a transaction holding a smaller id may commit after a larger one was read. A rise of
the counter that the entries read do not account for is such a late commit (or a write that went
around the repository), and counts as a change of an unnamed segment.

Broken configs. A change whose segment is now active with parameters its type's model refuses is
reported (the tick's log, its skip reason when it requests nothing, and an alert in the outbox, one
per segment version) and skipped: on its own it requests no run, since the calculation leaves such
a config out anyway. Every other change (a paused segment's included: the cost is a spare run)
makes its type pending.

Debounce. A pending type's run is requested once no new change has been seen for
`settle_seconds`, or `max_wait_seconds` after its first unrequested change if changes keep coming;
never while a run of its refresh job is queued or in progress (the schedule's too): changes seen
meanwhile wait for it to end and then get a run of their own. One RunRequest per type, for the
latest partition whose window has closed, with a run key naming the config state it was asked for,
so no two requests share one. Times come from `clock`, so tests can drive the sensor tick by tick.

The first tick (no cursor) records where the config store stands and requests nothing: changes
made before the sensor first ran are left to the daily schedule. A tick that fails (the config
store down) keeps the cursor, so its changes are seen by the next one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import dagster as dg
from pydantic import BaseModel, ValidationError

from resources.config_store.segments import ConfigChange, ConfigChanges
from segmentation_assets.core.segment_types import SEGMENT_TYPES
from segmentation_assets.dagster_resources import ConfigStoreResource

REFRESH_ON_CHANGE_SENSOR = "refresh_on_change_sensor"
# How often the daemon evaluates the sensor: one cheap aggregate query per tick.
TICK_SECONDS = 15
# A run of these statuses will still read the configs, or is reading them.
IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
# Changed segments named in a run's tags; a burst of thousands would not fit a tag.
NAMED_IN_TAGS = 10


class PendingRefresh(BaseModel):
    """Changes of one type that no run was requested for yet."""

    first_seen: float  # epoch seconds
    last_seen: float
    changes: int
    segments: list[str]  # the named ones, at most NAMED_IN_TAGS


class RefreshCursor(BaseModel):
    counters: dict[str, int]
    audit_id: int
    pending: dict[str, PendingRefresh] = {}


@dataclass(frozen=True)
class Trigger:
    """What asks for a run of one type in one tick."""

    segment_ids: list[str]  # the named changed segments, each once
    changes: int  # named changes, plus one for any the audit entries read do not account for


@dataclass(frozen=True)
class BrokenConfig:
    segment_id: str
    segment_type: str
    version: int
    problems: str

    def describe(self) -> str:
        return (
            f"segment {self.segment_id} ({self.segment_type}, version {self.version}) has broken params, "
            f"skipped: {self.problems}"
        )


def refresh_on_change_sensor(
    jobs: Mapping[str, Any],
    partitions_def: dg.TimeWindowPartitionsDefinition,
    *,
    settle_seconds: float,
    max_wait_seconds: float,
    clock: Callable[[], float] = time.time,
) -> dg.SensorDefinition:
    """`jobs`: each segment type's refresh job (`schedules.refresh_job`, an unresolved asset job)."""

    @dg.sensor(
        name=REFRESH_ON_CHANGE_SENSOR,
        jobs=list(jobs.values()),
        minimum_interval_seconds=TICK_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Recomputes a segment type's latest closed partition after its configs change: "
        f"once they have been quiet for {settle_seconds:g} s (at most {max_wait_seconds:g} s after "
        "the first change), one run per type, never beside a run of the type in progress.",
    )
    def refresh_on_change(context: dg.SensorEvaluationContext, config_store: ConfigStoreResource) -> dg.SensorResult:
        now = clock()
        previous = RefreshCursor.model_validate_json(context.cursor) if context.cursor else None
        seen = config_store.segments().changes_since(previous.audit_id if previous else None)
        state = RefreshCursor(counters=seen.counters, audit_id=seen.last_audit_id)
        if previous is None:
            return dg.SensorResult(cursor=state.model_dump_json(), skip_reason="first tick: config store state recorded")
        state.pending = {t: p for t, p in previous.pending.items() if t in jobs}  # a type may have left the code

        triggers, broken = _classify(previous.counters, seen, set(jobs))
        for segment_type, trigger in triggers.items():
            pending = state.pending.get(segment_type) or PendingRefresh(first_seen=now, last_seen=now, changes=0, segments=[])
            pending.last_seen = now
            pending.changes += trigger.changes
            pending.segments = list(dict.fromkeys(pending.segments + trigger.segment_ids))[:NAMED_IN_TAGS]
            state.pending[segment_type] = pending
        report_broken_configs(context, config_store, broken)

        requests, waiting = [], []
        for segment_type, pending in sorted(state.pending.items()):
            job_name = jobs[segment_type].name
            due = now - pending.last_seen >= settle_seconds or now - pending.first_seen >= max_wait_seconds
            if not due:
                waiting.append(f"{segment_type} settling")
                continue
            if context.instance.get_run_ids(dg.RunsFilter(job_name=job_name, statuses=IN_PROGRESS), limit=1):
                waiting.append(f"{segment_type} waits for its run in progress")
                continue
            partition_key = _latest_closed_partition(partitions_def, now)
            del state.pending[segment_type]
            if partition_key is None:
                context.log.warning(f"{segment_type} changed, but no partition has closed yet")
                continue
            requests.append(
                dg.RunRequest(
                    job_name=job_name,
                    partition_key=partition_key,
                    run_key=f"{job_name}:{partition_key}:{seen.counters[segment_type]}",
                    tags={"segmentation/trigger": "config_change", "segmentation/changes": _describe(pending)},
                )
            )
            context.log.info(f"requesting {job_name} for {partition_key}: {_describe(pending)}")

        skip_reason = None
        if not requests:
            skip_reason = "; ".join(waiting + [b.describe() for b in broken]) or "no config change"
        return dg.SensorResult(run_requests=requests, cursor=state.model_dump_json(), skip_reason=skip_reason)

    return refresh_on_change


def report_broken_configs(
    context: dg.SensorEvaluationContext, config_store: ConfigStoreResource, broken: list[BrokenConfig]
) -> None:
    """The tick's log, and an alert for the engineers per segment version. Should recording the
    alert fail, the tick fails and keeps its cursor: the next one meets the change again, and the
    dedup key keeps that from alerting twice."""
    if not broken:
        return
    outbox = config_store.alert_outbox()
    for config in broken:
        context.log.warning(config.describe())
        outbox.enqueue(
            dedup_key=f"broken_config:{config.segment_id}:{config.version}",
            kind="broken_config",
            title=f"Broken segment config skipped: {config.segment_id} ({config.segment_type})",
            message=config.describe(),
            payload={
                "segment_id": config.segment_id,
                "segment_type": config.segment_type,
                "version": config.version,
                "problems": config.problems,
            },
        )


def _classify(
    before: Mapping[str, int], seen: ConfigChanges, segment_types: set[str]
) -> tuple[dict[str, Trigger], list[BrokenConfig]]:
    """Per type whose counter rose, what asks for a run (if anything does); and the broken configs met."""
    triggers: dict[str, Trigger] = {}
    broken: dict[str, BrokenConfig] = {}
    for segment_type in sorted(segment_types & set(seen.counters)):
        rise = seen.counters[segment_type] - before.get(segment_type, 0)
        if rise <= 0:
            continue
        changes = [c for c in seen.changes if c.segment_type == segment_type]
        # What the named changes account for: a create adds a row and its version 1, the rest a version.
        named = sum(2 if c.action == "create" else 1 for c in changes)
        asking = []
        for change in changes:
            problems = _problems(change)
            if problems is None:
                asking.append(change.segment_id)
            else:
                broken[change.segment_id] = BrokenConfig(change.segment_id, segment_type, change.version, problems)
        unnamed = rise > named
        if asking or unnamed:
            triggers[segment_type] = Trigger(list(dict.fromkeys(asking)), len(asking) + unnamed)
    return triggers, list(broken.values())


def _problems(change: ConfigChange) -> str | None:
    """Why an active segment's params are refused by its type's model; None when they are fine or
    the segment is not computed."""
    if change.status != "active":
        return None
    try:
        SEGMENT_TYPES[change.segment_type].parse_params(change.params)
    except ValidationError as error:
        return ", ".join(f"{'.'.join(map(str, e['loc'])) or 'params'}: {e['msg']}" for e in error.errors())
    return None


def _latest_closed_partition(partitions_def: dg.TimeWindowPartitionsDefinition, now: float) -> str | None:
    with dg.partition_loading_context(effective_dt=datetime.fromtimestamp(now, timezone.utc)):
        return partitions_def.get_last_partition_key()


def _describe(pending: PendingRefresh) -> str:
    return f"{pending.changes} change(s), of {', '.join(pending.segments) or 'unnamed segments'}"
