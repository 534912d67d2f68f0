"""Lookups below the routes: a customer's segments through the cache, a segment's served
calculation (membership, members, stats), archived segments left out, outcomes as the API's errors."""

from __future__ import annotations

from typing import Any

from api.errors import ApiError, NotFound, invalid_field
from api.state import AppState
from resources.serving.export import ExportCursor, InvalidCursor, MembersPage
from resources.serving.filters import SegmentFilter
from resources.config_store.segments import SegmentNotFound
from resources.serving.reader import IndexGone


class CursorExpired(ApiError):
    status_code = 410
    code = "cursor_expired"


class Lookups:
    def __init__(self, state: AppState) -> None:
        self._state = state
        self._lookups = state.lookups

    async def segments_of(self, customer_ids: list[str], selected: SegmentFilter) -> dict[str, Any]:
        """customer_id -> its segments that match, as orjson writes them (cached bytes as they are)."""
        found = await self._lookups.serialized_segments(customer_ids)
        archived = self._state.archived_segment_ids
        return {c: selected.apply_serialized(segments, archived) for c, segments in found.items()}

    def _not_archived(self, segment_id: str) -> None:
        if segment_id in self._state.archived_segment_ids:
            raise NotFound(f"segment {segment_id!r} is archived")

    async def served(self, segment_id: str) -> dict[str, Any]:
        """The served calculation's summary, or 404: unknown, archived, or not calculated yet."""
        self._not_archived(segment_id)
        summary = await self._lookups.segment_summary(segment_id)
        if summary is None:
            raise NotFound(f"segment {segment_id!r} has no served calculation (unknown, or not calculated yet)")
        return summary

    async def membership(self, segment_id: str, customer_id: str) -> dict[str, Any]:
        self._not_archived(segment_id)
        # The customer's cached segment list answers most calls without asking about the segment.
        for segment in await self._lookups.customer_segments(customer_id):
            if segment["segment_id"] == segment_id:
                return _membership(segment_id, customer_id, True, segment["calculated_at"])
        summary = await self.served(segment_id)
        # The list and the summary are two reads: across an alias switch they can come from two
        # calculations (one cached, one fresh). The summary's own index answers for its calculation.
        member = await self._lookups.holds(summary["index"], segment_id, customer_id)
        return _membership(segment_id, customer_id, member, summary["calculated_at"])

    async def members_page(self, segment_id: str, cursor: str | None, limit: int) -> MembersPage:
        """A page sequence keeps reading the calculation it started on, even after the alias moves,
        until that index is deleted (then 410)."""
        if cursor is None:
            start = ExportCursor((await self.served(segment_id))["index"], segment_id, 0, 0)
        else:
            self._not_archived(segment_id)
            start = self._decoded(cursor, segment_id)
        try:
            return await self._state.export.page(start, limit)
        except IndexGone as error:
            raise CursorExpired(
                f"the calculation this cursor pages through ({start.index}) is no longer kept; start again without a cursor"
            ) from error
        except InvalidCursor as error:
            raise invalid_field("cursor", str(error)) from error

    def _decoded(self, cursor: str, segment_id: str) -> ExportCursor:
        try:
            return ExportCursor.decode(cursor, segment_id=segment_id, index_prefix=self._state.settings.index_prefix)
        except InvalidCursor as error:
            raise invalid_field("cursor", str(error)) from error

    async def history(self, segment_id: str, limit: int) -> dict[str, Any]:
        try:
            calculations = await self._state.config_store.run(self._state.history.of_segment, segment_id, limit=limit)
        except SegmentNotFound as error:
            raise NotFound(f"segment {segment_id!r} does not exist") from error
        # `served` is what the alias serves now, as stats say; lookups serve an archived segment no more.
        archived = segment_id in self._state.archived_segment_ids
        summary = await self._lookups.segment_summary(segment_id) if calculations and not archived else None
        served_index = summary["index"] if summary is not None else None
        return {
            "segment_id": segment_id,
            "calculations": [
                {**c.model_dump(mode="json"), "served": c.index is not None and c.index == served_index}
                for c in calculations
            ],
        }

    async def stats(self, segment_id: str) -> dict[str, Any]:
        summary = await self.served(segment_id)
        return {
            "segment_id": segment_id,
            "member_count": summary["member_count"],
            "calculated_at": summary["calculated_at"],
            "index": summary["index"],
        }


def _membership(segment_id: str, customer_id: str, member: bool, calculated_at: Any) -> dict[str, Any]:
    return {"segment_id": segment_id, "customer_id": customer_id, "member": member, "calculated_at": calculated_at}
