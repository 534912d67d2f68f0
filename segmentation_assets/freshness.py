"""When a served type counts as stale: a freshness check on each alias, and the sensor that runs them.

Each type's schedule computes the window that just closed at a fixed time of the next period (daily:
the refresh hour and minute; hourly: the minute). By a deadline, the refresh time plus a grace, the
alias of that window must be materialized, or its check fails. At its deadline the check expects
the window that closed at the start of the deadline's period; a deadline in the next period would
expect a window not due yet. So the grace stops at the end of the period: a refresh late in its
period gets a shorter one.

Dagster marks these helpers superseded by `FreshnessPolicy`; a policy, though, only asks when the
asset was last materialized, not which partition was: a backfill of an old window would look fresh.
The check asks for the window the schedule owes.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import dagster as dg

from segmentation_assets.index_and_alias import alias_key

ALIAS_FRESHNESS_SENSOR = "alias_freshness_sensor"
FRESHNESS_CHECK = "freshness_check"  # the name Dagster gives each of them
DAILY_GRACE_MINUTES = 3 * 60
HOURLY_GRACE_MINUTES = 30


def freshness_deadline_cron(granularity: str, hour_of_day: int, minute_of_hour: int) -> str:
    """The refresh time plus the grace, at most the period's last minute (UTC)."""
    if granularity == "hourly":
        return f"{min(minute_of_hour + HOURLY_GRACE_MINUTES, 59)} * * * *"
    minute_of_day = min(hour_of_day * 60 + minute_of_hour + DAILY_GRACE_MINUTES, 23 * 60 + 59)
    return f"{minute_of_day % 60} {minute_of_day // 60} * * *"


def alias_freshness_checks(segment_types: Iterable[str], deadline_cron: str) -> Sequence[dg.AssetChecksDefinition]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.SupersessionWarning)  # see the module's docstring
        return dg.build_time_partition_freshness_checks(
            assets=[alias_key(t) for t in segment_types],
            deadline_cron=deadline_cron,
            timezone="UTC",
            # ERROR: a stale type is worth an alert (segmentation_assets/alerts.py).
            severity=dg.AssetCheckSeverity.ERROR,
        )


def alias_freshness_sensor(checks: Sequence[dg.AssetChecksDefinition]) -> dg.SensorDefinition:
    """Runs a check once it could have become overdue; a failed one again once its alias is materialized."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        return dg.build_sensor_for_freshness_checks(
            freshness_checks=checks, name=ALIAS_FRESHNESS_SENSOR, default_status=dg.DefaultSensorStatus.RUNNING
        )
