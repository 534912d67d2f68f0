"""How publishing follows a calculation by itself.

Index and alias assets are `eager`: a new materialization of a type's members (latest partition)
requests its index and alias, in one run, on the next tick of the sensor below; backfills of older
partitions are left to whoever runs them. The sensor is on by default, so `dagster dev` and a
deployed daemon publish without anyone switching it on.
"""

from __future__ import annotations

import dagster as dg

PUBLISH_AUTOMATION_SENSOR = "publish_automation_sensor"


def publish_automation_condition() -> dg.AutomationCondition:
    return dg.AutomationCondition.eager()


def publish_automation_sensor(asset_keys: list[dg.AssetKey]) -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        PUBLISH_AUTOMATION_SENSOR,
        target=dg.AssetSelection.assets(*asset_keys),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Publishes each new calculation: requests the index and alias of a type's latest "
        "partition once its members are materialized.",
    )
