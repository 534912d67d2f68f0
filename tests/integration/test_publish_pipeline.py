"""The real pipeline, as `segmentation run` drives it: Spark calculation, index, alias, through
Dagster on the PostgreSQL-backed instance; then what an operator sees of it, and that the
automation sensor does not publish the same calculation twice."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest
import redis
from typer.testing import CliRunner

from cli.main import app
from cli.runs import materialize_partition
from definitions import build_definitions
from resources.config_store.database import session_factory
from resources.config_store.segments import SegmentRepository
from resources.lake.manifest import read_manifest
from resources.lake.storage import Lake
from resources.names import generation_key
from resources.settings import Settings, get_settings
from segmentation_assets.index_and_alias import alias_key, index_key
from segmentation_assets.instance import dagster_instance
from tests.integration.publishing import TYPE, lock_holder, served, writer
from tests.lake_builder import write_lake
from tests.reliability.sustained_load import settings_environment

pytestmark = pytest.mark.integration

PARTITION = "2026-11-25"
T = datetime(2026, 11, 26, tzinfo=timezone.utc)
DAY = timedelta(days=1)


def latest_metadata(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict:
    [record] = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key, asset_partitions=[PARTITION]), limit=1).records
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


def test_segmentation_run_publishes_a_verified_index_and_the_sensor_does_not_repeat_it(settings: Settings) -> None:
    write_lake(
        Path(settings.lake_uri),
        customers=[(f"c{n}", T - n * DAY, "ES", "Madrid") for n in range(1, 40)],
        stores=[("s1", "Farmacia Sol", "pharmacy", "Madrid", "ES")],
        orders=[("o1", "c2", "s1", T - DAY, 10.0, "delivered")],
    )
    segments = SegmentRepository(session_factory(settings.database_url))
    made = {}
    for name, params, status in [
        ("a month, no order", {"max_days_since_signup": 30}, "active"),
        ("nobody", {"max_days_since_signup": 1, "country": "FR"}, "active"),
        ("paused, with members", {"max_days_since_signup": 30}, "paused"),
        ("archived, with members", {"max_days_since_signup": 30}, "active"),
    ]:
        made[name] = segments.create(
            name=name, segment_type=TYPE, params=params, targeting={}, labels={}, description=None, status=status, actor="test"
        ).id
    segments.archive(made["archived, with members"], actor="test")

    instance = dagster_instance(settings)
    defs, now = build_definitions(settings), T + 3 * timedelta(hours=1)
    before = dg.evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=now)

    outcome = materialize_partition(settings, PARTITION, [TYPE])

    assert outcome.success, "\n".join(outcome.summary_lines)
    built, published = latest_metadata(instance, index_key(TYPE)), latest_metadata(instance, alias_key(TYPE))
    manifest = read_manifest(Lake(settings.lake_uri), Lake(settings.lake_uri).results_dir(TYPE, PARTITION))
    assert built["memberships"] == manifest.total_members == 29  # c1..c30 but c2
    assert built["segments"] == 2 and built["bytes"] > 0 and built["previous_index"] == "none"
    # Only active segments are computed: the paused and the archived one would have members.
    assert {s.segment_id for s in manifest.segments} == {made["a month, no order"], made["nobody"]}
    assert served(settings) == [built["index"]] == [published["index"]]
    assert published["generation"] == int(redis.Redis.from_url(settings.redis_url).get(generation_key(settings.index_prefix)))
    counts = writer(settings).segment_counts(built["index"])
    assert sorted(c.members for c in counts.values()) == [0, 29]
    assert lock_holder(settings) is None

    # The run published its own calculation: the sensor's next tick has nothing left to request.
    evaluation = dg.evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=now, cursor=before.cursor)
    assert not evaluation.get_requested_partitions(index_key(TYPE))
    assert not evaluation.get_requested_partitions(alias_key(TYPE))


def test_segmentation_run_exits_non_zero_when_a_type_is_unknown_or_a_step_fails(make_namespace, monkeypatch) -> None:
    settings = make_namespace()  # of its own: no lake at all
    SegmentRepository(session_factory(settings.database_url)).create(
        name="a month", segment_type=TYPE, params={"max_days_since_signup": 30}, targeting={}, labels={},
        description=None, status="active", actor="test",
    )  # and no lake at all: the calculation has nothing to read
    for name, value in settings_environment(settings).items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        unknown = CliRunner().invoke(app, ["run", "--partition", PARTITION, "--segment-type", "nope"])
        failed = CliRunner().invoke(app, ["run", "--partition", PARTITION, "--segment-type", TYPE])
    finally:
        get_settings.cache_clear()
    assert unknown.exit_code == 1 and "unknown segment type(s) nope" in unknown.output
    assert failed.exit_code == 1, failed.output
    assert "FAILED" in failed.output and f"step FAILED {TYPE}__members" in failed.output
    assert served(settings) == []


@pytest.mark.parametrize("partition", ["2026-13-45", "latest", "2020-01-01", "2999-01-01"])
def test_segmentation_run_of_a_partition_that_does_not_exist_exits_1_naming_it(
    make_namespace, monkeypatch, partition
) -> None:
    settings = make_namespace()
    for name, value in settings_environment(settings).items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["run", "--partition", partition])
        one_type = CliRunner().invoke(app, ["run", "--partition", partition, "--segment-type", TYPE])
    finally:
        get_settings.cache_clear()
    for outcome in (result, one_type):
        # A SystemExit is typer.Exit: any other exception (DagsterUnknownPartitionError) was a traceback.
        assert isinstance(outcome.exception, SystemExit), outcome.exception
        assert outcome.exit_code == 1, outcome.output
        [line] = outcome.output.strip().splitlines()
        assert line.startswith("error: ") and f"'{partition}'" in line and "YYYY-MM-DD" in line, line
        assert "Traceback" not in outcome.output
