"""Previews on the platform's compute: a sensor that batches queued previews into runs of an op job.

The API only records a preview, `queued`, in the config store (resources/config_store/previews.py).
The `preview_sensor` (a tick every 5 s) claims the queued ones, at most `BATCH` in request order,
and asks for one run of `preview_job` for them, its run key the claim. The run marks them
`running`, computes each type and partition's previews in one Spark pass with the calculation's own
code (core/preview_job.py), and stores each one `done` (count and sample) or `failed` (why). An op
job, not an asset: a preview changes nothing that is served and writes nothing to the lake.

Queueing. Preview runs carry the tag `segmentation/run=preview`; the instance's run queue lets one
such run start at a time (`tag_concurrency_limits`, segmentation_assets/instance.py) and dequeues
them after other runs (`dagster/priority=-1`), so previews wait behind each other, never take more
than one run slot, and never hold back a refresh. While a preview run waits to start, the sensor
claims nothing: previews requested meanwhile go into the next run together.

Nothing stays unfinished for ever. Each tick checks the previews a run was asked for: those of a
run that ended (failed, canceled, or a worker that died and was marked failed) without finishing
them, and those running longer than `timeout_seconds`, are failed with why; a claim whose run
never came to be (a tick whose request was lost) goes back to the queue. Finished previews older
than the retention are deleted.
"""

# No `from __future__ import annotations`: Dagster reads the op's config type from its annotation.
import uuid
from collections import defaultdict
from datetime import datetime, timedelta

import dagster as dg
from dagster_pyspark import LazyPySparkResource

from resources.config_store.previews import Preview, PreviewRepository
from segmentation_assets.core.preview_job import MissingRawData, PreviewJobRequest, run_preview_job
from segmentation_assets.conventions import PREVIEW_RUN_KIND, RUN_KIND_TAG
from segmentation_assets.core.segment_types import SEGMENT_TYPES
from segmentation_assets.dagster_resources import ConfigStoreResource, LakeResource

PREVIEW_JOB = "preview_job"
PREVIEW_OP = "compute_previews"
PREVIEW_SENSOR = "preview_sensor"
# Queued runs of a higher priority start first: a refresh waiting beside a preview goes before it.
PREVIEW_RUN_TAGS = {RUN_KIND_TAG: PREVIEW_RUN_KIND, "dagster/priority": "-1"}
TICK_SECONDS = 5
# Previews per run: one run computes them one type and partition at a time.
BATCH = 50
# A claim with no run this long after it: the request was lost, the previews go back to the queue.
LOST_REQUEST_SECONDS = 120
# Previews named in a run's tags.
NAMED_IN_TAGS = 10
WAITING = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING]
ENDED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
_ERROR_LINE_CHARACTERS = 400
# Each preview run starts a JVM for one short job: the C1 compiler alone gets it compiled sooner.
# On the demo lake, a cold preview took 12 s instead of 17.5 s, the session 4 s instead of 5 s
# (bench/preview_latency.py's job, fresh processes); a long calculation would want C2, but no
# calculation runs in a preview run's process.
PREVIEW_SPARK_SETTINGS = {"spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1"}


class PreviewRunConfig(dg.Config):
    preview_ids: list[str]


def describe_error(error: BaseException) -> str:
    """One line of what went wrong: the exception's type and the first line of its message (a
    Spark error's message goes on with the JVM's stack)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    first = lines[0] if lines else "no message"
    if len(first) > _ERROR_LINE_CHARACTERS:
        first = first[: _ERROR_LINE_CHARACTERS - 1] + "…"
    return f"{type(error).__name__}: {first}"


def _compute_group(
    context: dg.OpExecutionContext,
    previews: PreviewRepository,
    spark_resource: LazyPySparkResource,
    request: PreviewJobRequest,
    group: list[Preview],
) -> bool:
    """Computes and stores one type and partition's previews; False when Spark itself failed."""
    try:
        outcomes = run_preview_job(spark_resource.spark_session, request)
    except MissingRawData as error:
        for preview in group:
            previews.fail(preview.id, context.run_id, f"no raw data for partition {request.partition_key}: {error}")
        return True
    except Exception as error:  # Spark's, or the lake's: the run fails, after saying why per preview
        context.log.error(f"previews of {request.segment_type} for {request.partition_key} failed: {error!r}")
        for preview in group:
            previews.fail(preview.id, context.run_id, f"the Spark job failed: {describe_error(error)}")
        return False
    for preview in group:
        outcome = outcomes[preview.id]
        if outcome.error is not None:
            previews.fail(preview.id, context.run_id, outcome.error)
        else:
            previews.finish(
                preview.id,
                context.run_id,
                member_count=outcome.member_count,
                sample_customer_ids=outcome.sample_customer_ids,
            )
            context.log.info(f"preview {preview.id}: {outcome.member_count} members")
    return True


def build_preview_job(partitions_def: dg.TimeWindowPartitionsDefinition) -> dg.JobDefinition:
    @dg.op(
        name=PREVIEW_OP,
        description="Computes the claimed previews: counts and samples, stored in the config store; nothing written to the lake.",
    )
    def compute_previews(
        context: dg.OpExecutionContext,
        config: PreviewRunConfig,
        lake: LakeResource,
        config_store: ConfigStoreResource,
        preview_spark: LazyPySparkResource,
    ) -> None:
        previews = config_store.previews()
        started = previews.start(config.preview_ids, context.run_id)
        context.log.info(f"{len(started)} of {len(config.preview_ids)} previews to compute")
        groups: dict[tuple[str, str], list[Preview]] = defaultdict(list)
        for preview in started:
            groups[(preview.segment_type, preview.partition_key)].append(preview)
        spark_failed = False
        try:
            for (segment_type, partition_key), group in groups.items():
                problem = None
                if segment_type not in SEGMENT_TYPES:
                    problem = f"unknown segment type {segment_type!r}"
                elif not _is_partition(partitions_def, partition_key):
                    problem = f"{partition_key} is not a partition of this deployment"
                if problem is not None:
                    for preview in group:
                        previews.fail(preview.id, context.run_id, problem)
                    continue
                window = partitions_def.time_window_for_partition_key(partition_key)
                request = PreviewJobRequest(
                    segment_type=segment_type,
                    partition_key=partition_key,
                    window_start=window.start,
                    as_of=window.end,
                    lake_uri=lake.uri,
                    params={p.id: p.params for p in group},
                )
                spark_failed |= not _compute_group(context, previews, preview_spark, request, group)
        finally:
            # Whatever stopped the loop (an error, the run terminated), no preview of this run stays running.
            for preview in started:
                previews.fail(preview.id, context.run_id, "the preview run stopped before computing it")
        if spark_failed:
            raise dg.Failure("some previews failed in Spark; each says why", allow_retries=False)

    @dg.job(
        name=PREVIEW_JOB,
        tags=PREVIEW_RUN_TAGS,
        description="Previews asked for through the API (POST /v1/segments:preview), requested by the "
        "preview_sensor. One such run at a time (the instance's run queue); changes nothing served.",
    )
    def preview_job() -> None:
        compute_previews()

    return preview_job


def _is_partition(partitions_def: dg.TimeWindowPartitionsDefinition, key: str) -> bool:
    try:
        window = partitions_def.time_window_for_partition_key(key)
    except Exception:
        return False
    return partitions_def.get_partition_key_for_timestamp(window.start.timestamp()) == key


def _seconds(since: datetime | None, now: datetime) -> float:
    return (now - since).total_seconds() if since is not None else 0.0


def _run_seconds(instance: dg.DagsterInstance, run: dg.DagsterRun, now: datetime) -> float:
    """How long the run has been running (0 while it waits in the queue)."""
    if run.status != dg.DagsterRunStatus.STARTED:
        return 0.0
    record = instance.get_run_record_by_id(run.run_id)
    if record is None or record.start_time is None:
        return 0.0
    return now.timestamp() - record.start_time


def _settle_unfinished(
    instance: dg.DagsterInstance, previews: PreviewRepository, now: datetime, timeout_seconds: float
) -> list[str]:
    """Fails what a run left unfinished, and puts back what no run came for; what it did, as notes."""
    notes = []
    runs_by_id: dict[str, dg.DagsterRun | None] = {}
    runs_by_key: dict[str, dg.DagsterRun | None] = {}
    for preview in previews.unfinished():
        if preview.status == "running":
            if preview.run_id and preview.run_id not in runs_by_id:
                runs_by_id[preview.run_id] = instance.get_run_by_id(preview.run_id)
            run = runs_by_id.get(preview.run_id) if preview.run_id else None
            if run is None or run.status in ENDED:
                ended = f"ended ({run.status.value.lower()})" if run is not None else "is gone"
                error = f"the preview run {preview.run_id} {ended} before finishing this preview"
            elif _seconds(preview.started_at, now) > timeout_seconds:
                error = f"not finished {timeout_seconds:g} s after the preview run {preview.run_id} started it"
            else:
                continue
        else:  # queued, claimed for a run
            if preview.claim not in runs_by_key:
                [found] = instance.get_runs(dg.RunsFilter(tags={"dagster/run_key": preview.claim}), limit=1) or [None]
                runs_by_key[preview.claim] = found
            run = runs_by_key[preview.claim]
            if run is None:
                if _seconds(preview.claimed_at, now) > LOST_REQUEST_SECONDS and previews.release([preview.id], preview.claim):
                    notes.append(f"{preview.id} back in the queue: no run came of its request")
                continue
            if run.status in ENDED:
                error = f"the preview run {run.run_id} ended ({run.status.value.lower()}) before starting this preview"
            elif _run_seconds(instance, run, now) > timeout_seconds:  # its worker died before it began
                error = f"the preview run {run.run_id} did not start this preview within {timeout_seconds:g} s"
            else:
                continue
        if previews.fail_unfinished(preview, error):
            notes.append(f"{preview.id} failed: {error}")
    return notes


def preview_sensor(job: dg.JobDefinition, *, timeout_seconds: float, retention: timedelta) -> dg.SensorDefinition:
    @dg.sensor(
        name=PREVIEW_SENSOR,
        job=job,
        minimum_interval_seconds=TICK_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Asks for a run of preview_job for the queued previews (one run waiting at most; the "
        f"instance runs one at a time); fails previews a run left unfinished or that ran over {timeout_seconds:g} s; "
        f"deletes finished previews after {retention}.",
    )
    def previews_sensor(context: dg.SensorEvaluationContext, config_store: ConfigStoreResource) -> dg.SensorResult:
        previews = config_store.previews()
        now = previews.now()  # the database's clock, which stamped the previews
        notes = _settle_unfinished(context.instance, previews, now, timeout_seconds)
        if deleted := previews.delete_finished_before(now - retention):
            notes.append(f"{deleted} finished previews older than {retention} deleted")
        for note in notes:
            context.log.info(note)
        waiting = context.instance.get_run_ids(dg.RunsFilter(job_name=job.name, statuses=WAITING), limit=1)
        if waiting:
            return dg.SensorResult(
                skip_reason="; ".join([*notes, f"preview run {waiting[0]} waits to start: queued previews go into the next one"])
            )
        claim = f"preview:{uuid.uuid4().hex}"
        claimed = previews.claim_queued(claim, limit=BATCH)
        if not claimed:
            return dg.SensorResult(skip_reason="; ".join([*notes, "no queued preview"]))
        ids = [p.id for p in claimed]
        context.log.info(f"requesting a preview run for {len(ids)} previews: {', '.join(ids)}")
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=claim,
                    run_config={"ops": {PREVIEW_OP: {"config": {"preview_ids": ids}}}},
                    tags={**PREVIEW_RUN_TAGS, "segmentation/previews": ", ".join(ids[:NAMED_IN_TAGS])},
                )
            ]
        )

    return previews_sensor
