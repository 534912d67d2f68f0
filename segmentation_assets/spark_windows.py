"""Time arithmetic of partition windows, in integer microseconds so that edges are exact."""

from __future__ import annotations

from datetime import datetime, timezone

DAY_MICROS = 86_400 * 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def to_micros(moment: datetime) -> int:
    delta = moment.astimezone(timezone.utc) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def micros_before_as_of(as_of_micros: int, days: int) -> int:
    return as_of_micros - days * DAY_MICROS
