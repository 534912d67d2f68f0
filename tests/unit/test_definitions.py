"""The Dagster Definitions load, with the three assets per segment type that `dagster dev` shows."""

from __future__ import annotations

import dagster as dg
import pytest

from cli.runs import unknown_partition_error
from definitions import build_definitions
from resources.settings import Settings
from segmentation_assets.core.segment_types import SEGMENT_TYPES


def test_definitions_load_with_three_assets_per_type() -> None:
    defs = build_definitions(Settings())
    keys = {key.to_user_string() for key in defs.resolve_all_asset_keys()}
    for name in SEGMENT_TYPES:
        assert {f"{name}/members", f"{name}/index", f"{name}/alias"} <= keys
    index_asset = defs.resolve_assets_def(dg.AssetKey(["new_customers", "index"]))
    checks = {c.name: c for c in index_asset.check_specs}
    assert checks["complete"].blocking and not checks["no_failed_chunks"].blocking


def test_hourly_partitions_by_setting() -> None:
    defs = build_definitions(Settings(partition_granularity="hourly"))
    members = defs.resolve_assets_def(dg.AssetKey(["new_customers", "members"]))
    assert isinstance(members.partitions_def, dg.HourlyPartitionsDefinition)


@pytest.mark.parametrize(
    ("granularity", "key", "valid"),
    [
        ("hourly", "2026-11-25-13:00", True),
        ("hourly", "2026-11-25-13:30", False),  # Dagster parses it, as the window 14:00-15:00
        ("hourly", "2026-11-25", False),
        ("daily", "2026-11-25", True),
        ("daily", "2026-11-25-13:00", False),
        ("daily", "2026-13-45", False),
    ],
)
def test_segmentation_run_takes_only_the_partitions_keys(granularity: str, key: str, valid: bool) -> None:
    error = unknown_partition_error(build_definitions(Settings(partition_granularity=granularity)), key, ["new_customers"])
    assert (error is None) is valid, error
    if not valid:
        assert repr(key) in error and ("YYYY-MM-DD-HH:00" if granularity == "hourly" else "YYYY-MM-DD (UTC)") in error


def test_a_running_refresh_schedule_per_type_targets_the_last_closed_window() -> None:
    defs = build_definitions(Settings(refresh_hour_of_day=2, refresh_minute_of_hour=30))
    schedules = {s.name: s for s in defs.schedules}
    assert set(schedules) == {f"refresh_{t}_schedule" for t in SEGMENT_TYPES}
    for schedule in schedules.values():
        assert schedule.cron_schedule == "30 2 * * *"
        assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


def test_every_asset_is_owned_tagged_retried_and_backfilled_in_one_run() -> None:
    defs = build_definitions(Settings(step_max_retries=4, step_retry_delay_seconds=7))
    for segment_type in SEGMENT_TYPES:
        for stage, name in (("calculation", "members"), ("index", "index"), ("alias", "alias")):
            key = dg.AssetKey([segment_type, name])
            asset = defs.resolve_assets_def(key)
            spec = next(s for s in asset.specs if s.key == key)
            assert spec.owners == ["team:segmentation"]
            assert {"segment_type": segment_type, "stage": stage}.items() <= spec.tags.items()
            assert asset.backfill_policy == dg.BackfillPolicy.single_run()
            policy = asset.op.retry_policy
            assert (policy.max_retries, policy.delay, policy.backoff) == (4, 7, dg.Backoff.EXPONENTIAL)


def test_no_retries_by_setting() -> None:
    defs = build_definitions(Settings(step_max_retries=0))
    assert defs.resolve_assets_def(dg.AssetKey(["new_customers", "index"])).op.retry_policy is None
