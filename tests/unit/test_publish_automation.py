"""Publishing follows a calculation by itself: the definitions carry the automation conditions, the
sensor that evaluates them (on by default), the aliases' freshness checks and the rollback job."""

from __future__ import annotations

from datetime import datetime, timezone

import dagster as dg
import pytest

from definitions import build_definitions
from resources.settings import Settings
from segmentation_assets.automation import PUBLISH_AUTOMATION_SENSOR
from segmentation_assets.freshness import ALIAS_FRESHNESS_SENSOR, FRESHNESS_CHECK
from segmentation_assets.calculation import members_key
from segmentation_assets.index_and_alias import alias_key, index_key
from segmentation_assets.rollback import ROLLBACK_JOB
from segmentation_assets.core.segment_types import SEGMENT_TYPES


@pytest.mark.parametrize(
    ("granularity", "hour", "minute", "deadline"),
    [
        ("daily", 1, 15, "15 4 * * *"),  # the refresh time plus 3 hours
        ("daily", 22, 30, "59 23 * * *"),  # within the day: at 01:30 the next day's window is not due yet
        ("hourly", 1, 15, "45 * * * *"),  # the minute plus 30 minutes; the hour does not apply
        ("hourly", 1, 45, "59 * * * *"),  # within the hour, likewise
    ],
)
def test_each_alias_has_a_freshness_check_due_after_its_refresh(granularity: str, hour: int, minute: int, deadline: str) -> None:
    defs = build_definitions(
        Settings(partition_granularity=granularity, refresh_hour_of_day=hour, refresh_minute_of_hour=minute)
    )
    deadlines = {
        spec.asset_key: spec.metadata["dagster/freshness_params"].value["deadline_cron"]
        for checks in defs.asset_checks
        for spec in checks.check_specs
        if spec.name == FRESHNESS_CHECK
    }
    assert deadlines == {alias_key(name): deadline for name in SEGMENT_TYPES}
    for name in SEGMENT_TYPES:
        [spec] = defs.resolve_assets_def(alias_key(name)).specs
        assert spec.freshness_policy is None  # one definition of stale: the check
    sensor = defs.resolve_sensor_def(ALIAS_FRESHNESS_SENSOR)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_the_publish_sensor_is_running_by_default_and_targets_every_index_and_alias() -> None:
    defs = build_definitions(Settings())
    sensor = defs.resolve_sensor_def(PUBLISH_AUTOMATION_SENSOR)
    assert isinstance(sensor, dg.AutomationConditionSensorDefinition)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    targeted = sensor.asset_selection.resolve(defs.resolve_asset_graph())
    assert targeted == {key for name in SEGMENT_TYPES for key in (index_key(name), alias_key(name))}
    for key in targeted:
        assert defs.resolve_assets_def(key).automation_conditions_by_key[key] is not None
    assert defs.resolve_job_def(ROLLBACK_JOB) is not None


def test_a_new_calculation_requests_its_index_and_alias_and_nothing_else() -> None:
    defs = build_definitions(Settings())
    publishing = dg.AssetSelection.assets(*[k for t in SEGMENT_TYPES for k in (index_key(t), alias_key(t))])
    now = datetime(2026, 11, 26, 3, tzinfo=timezone.utc)  # the latest daily partition is 2026-11-25
    with dg.instance_for_test() as instance:
        quiet = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=publishing, evaluation_time=now)
        assert quiet.total_requested == 0  # no calculation yet: nothing to publish

        instance.report_runless_asset_event(dg.AssetMaterialization(members_key("high_spenders"), partition="2026-11-25"))
        after = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, asset_selection=publishing, evaluation_time=now, cursor=quiet.cursor
        )

        assert after.get_requested_partitions(index_key("high_spenders")) == {"2026-11-25"}
        assert after.get_requested_partitions(alias_key("high_spenders")) == {"2026-11-25"}
        assert after.total_requested == 2  # other types were not recalculated

        again = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, asset_selection=publishing, evaluation_time=now, cursor=after.cursor
        )
        assert again.total_requested == 0  # requested once per new calculation


def test_a_backfilled_old_calculation_is_not_published_by_itself() -> None:
    defs = build_definitions(Settings())
    now = datetime(2026, 11, 26, 3, tzinfo=timezone.utc)
    with dg.instance_for_test() as instance:
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=now)
        instance.report_runless_asset_event(dg.AssetMaterialization(members_key("new_customers"), partition="2026-10-01"))
        after = dg.evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=now, cursor=first.cursor)
        assert not after.get_requested_partitions(index_key("new_customers"))
