"""Time arithmetic of partition windows, in integer microseconds so that window edges are exact.

"In the last N days" is [T - N days, T). With age = T - t > 0 in microseconds and
age_days = ceil(age / 1 day), t is in that window exactly when age_days <= N, so every window
test is an integer comparison on one precomputed column.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import Column

DAY_MICROS = 86_400 * 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def to_micros(moment: datetime) -> int:
    delta = moment.astimezone(timezone.utc) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds

def age_days(timestamp_column: str, as_of_micros: int) -> Column:
    """Whole days, rounded up, from the timestamp to T; 1 for anything in the last day before T."""
    from pyspark.sql import functions as F

    return F.expr(f"(({as_of_micros} - unix_micros(`{timestamp_column}`)) + {DAY_MICROS - 1}) div {DAY_MICROS}")
