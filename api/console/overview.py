"""The segment list as owners see it: each segment with its last calculation (member count,
entered, exited, when) and whether that calculation is fresh.

Fresh means what the alias freshness check means for the segment's type: the segment's latest
calculation is of the partition the schedule owes by now. That is the latest closed partition
once the refresh time plus its grace has passed (daily: 3 h after the refresh time; hourly:
30 min after the refresh minute, within the hour), else the one before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import ValidationError

from api.config.input import encode_cursor
from api.config.schemas import SegmentListQuery
from api.config.service import SegmentConfigs
from api.errors import invalid_input, validation_details
from api.state import AppState
from resources.config_store.history import Calculation
from resources.config_store.segments import Segment
from resources.partition_keys import latest_closed_partition
from resources.settings import Settings

# As the alias freshness check's grace (segmentation_assets/freshness.py).
DAILY_GRACE_MINUTES = 3 * 60
HOURLY_GRACE_MINUTES = 30
PAGE_SIZE = 50
# A search reads at most this many segments for one page of matches, then offers the next page.
SEARCH_SCAN_LIMIT = 5_000
SCAN_PAGE = 500


@dataclass(frozen=True)
class ListedSegment:
    segment: Segment
    latest: Calculation | None
    freshness: str  # fresh, stale, not calculated, paused, archived


def owed_partition(settings: Settings, now: datetime) -> str | None:
    """The partition every active segment should have been calculated for by `now`."""
    if settings.partition_granularity == "hourly":
        delay = min(settings.refresh_minute_of_hour + HOURLY_GRACE_MINUTES, 59)
    else:
        delay = min(
            settings.refresh_hour_of_day * 60 + settings.refresh_minute_of_hour + DAILY_GRACE_MINUTES, 23 * 60 + 59
        )
    return latest_closed_partition(
        settings.partition_granularity, settings.partitions_start_date, now - timedelta(minutes=delay)
    )


def freshness(segment: Segment, latest: Calculation | None, owed: str | None) -> str:
    if segment.status != "active":
        return segment.status  # neither paused nor archived segments are calculated
    if latest is None:
        return "not calculated"
    return "fresh" if owed is None or latest.partition >= owed else "stale"


def matches(segment: Segment, search: str) -> bool:
    """A case-insensitive search in the name, the id and the labels."""
    needle = search.casefold()
    haystack = [segment.name, segment.id, *(f"{k}:{v}" for k, v in segment.labels.items())]
    return any(needle in text.casefold() for text in haystack)


async def listed_segments(
    state: AppState, query: SegmentListQuery, search: str
) -> tuple[list[ListedSegment], str | None]:
    """One page of the list and the cursor of the next one."""
    configs = SegmentConfigs(state)
    if search:
        found, next_cursor = await _search(configs, query, search)
    else:
        page = await configs.page(query.model_copy(update={"limit": PAGE_SIZE}))
        found, next_cursor = page["segments"], page["next_cursor"]
    latest = await state.config_store.run(state.history.latest_of, [s.id for s in found])
    owed = owed_partition(state.settings, datetime.now(timezone.utc))
    return [ListedSegment(s, latest.get(s.id), freshness(s, latest.get(s.id), owed)) for s in found], next_cursor


async def _search(configs: SegmentConfigs, query: SegmentListQuery, search: str) -> tuple[list[Segment], str | None]:
    """The API's pages read until a page of matches is found (or `SEARCH_SCAN_LIMIT` segments were
    read); the cursor points after the last segment read, so that paging still sees each match once."""
    found: list[Segment] = []
    scanned, cursor = 0, query.cursor
    while True:
        page = await configs.page(query.model_copy(update={"limit": SCAN_PAGE, "cursor": cursor}))
        segments = page["segments"]
        for i, segment in enumerate(segments):
            scanned += 1
            if matches(segment, search):
                found.append(segment)
            if len(found) == PAGE_SIZE or scanned >= SEARCH_SCAN_LIMIT:
                more = i + 1 < len(segments) or page["next_cursor"] is not None
                return found, encode_cursor(segment.id) if more else None
        if page["next_cursor"] is None:
            return found, None
        cursor = page["next_cursor"]


def list_query(params: dict[str, Any]) -> SegmentListQuery:
    """The API's listing query from the list page's filters (a status of `all` asks for every one)."""
    status = params.get("status") or ""
    statuses = ["active", "paused", "archived"] if status == "all" else ([status] if status else [])
    try:
        return SegmentListQuery.model_validate(
            {
                "segment_type": params.get("segment_type") or None,
                "status": statuses,
                "label": [params["label"]] if params.get("label") else [],
                "cursor": params.get("cursor") or None,
            }
        )
    except ValidationError as error:
        raise invalid_input(validation_details(list(error.errors()), prefix=("query",))) from error
