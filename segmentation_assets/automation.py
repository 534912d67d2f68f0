"""How publishing follows a calculation by itself, and when a served type counts as stale.

Index and alias assets are `eager`: a new materialization of a type's members (latest partition)
requests its index and alias, in one run, on the next tick of the sensor below; backfills of older
partitions are left to whoever runs them. The sensor is on by default, so `dagster dev` and a
deployed daemon publish without anyone switching it on.
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

PUBLISH_AUTOMATION_SENSOR = "publish_automation_sensor"


def publish_automation_condition() -> dg.AutomationCondition:
    return dg.AutomationCondition.eager()


def partition_period(partitions_def: dg.PartitionsDefinition) -> timedelta:
    assert isinstance(partitions_def, dg.TimeWindowPartitionsDefinition)
    window = partitions_def.time_window_for_partition_key(partitions_def.get_first_partition_key())
    return window.end - window.start


def alias_freshness_policy(partitions_def: dg.PartitionsDefinition) -> dg.FreshnessPolicy:
    """A type is calculated once per partition: warn when a quarter of a period late, fail when one
    whole calculation was missed (daily: 30 h and 48 h; hourly: 75 and 120 minutes)."""
    period = partition_period(partitions_def)
    return dg.FreshnessPolicy.time_window(fail_window=2 * period, warn_window=period * 5 / 4)


def publish_automation_sensor(asset_keys: list[dg.AssetKey]) -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        PUBLISH_AUTOMATION_SENSOR,
        target=dg.AssetSelection.assets(*asset_keys),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Publishes each new calculation: requests the index and alias of a type's latest "
        "partition once its members are materialized.",
    )
