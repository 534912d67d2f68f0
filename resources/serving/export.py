"""Paging through every member of a segment once, in a stable order.

Order: chunk documents by `chunk`, ids within a chunk sorted. The cursor names the concrete
index it started on, so a page sequence goes on reading the same calculation even after the alias
moves; once that index is deleted the cursor is expired (`IndexGone`), never silently switched
(a chunk this process still holds, among the last `CACHED_CHUNKS` it read, still answers its page:
the same calculation's ids).
"""

from __future__ import annotations

import base64
import binascii
from collections import OrderedDict
from dataclasses import dataclass

import orjson

from resources.names import is_index_name
from resources.serving.reader import SegmentReader

# Chunk documents hold thousands of ids (5,000 by default); a page sequence reads each one once per process.
CACHED_CHUNKS = 4
INTEGER_FIELD_LIMIT = 2**31  # `chunk` is an `integer` field: Elasticsearch refuses a term beyond it


class InvalidCursor(ValueError):
    pass


@dataclass(frozen=True)
class ExportCursor:
    index: str
    segment_id: str
    chunk: int
    offset: int

    def encode(self) -> str:
        raw = orjson.dumps([1, self.index, self.segment_id, self.chunk, self.offset])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str, *, segment_id: str, index_prefix: str) -> ExportCursor:
        """The cursor, checked: it must come from this segment and point into one of our indices."""
        try:
            version, index, cursor_segment, chunk, offset = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        except (ValueError, TypeError, binascii.Error) as error:
            raise InvalidCursor("not a cursor this API gave out") from error
        if not (_is_count(version) and version == 1 and _is_count(chunk) and _is_count(offset)):
            raise InvalidCursor("not a cursor this API gave out")
        # One calculation's index of ours, by name: no pattern (`*`), list (`,`) nor remote cluster
        # (`:`) that would let a forged cursor read another deployment's indices, and no alias,
        # whose pages would come from whichever calculation it points at when each is asked.
        if not isinstance(index, str) or len(index) > 255 or not is_index_name(index_prefix, index):
            raise InvalidCursor("not a cursor this API gave out")
        if cursor_segment != segment_id:
            raise InvalidCursor(f"the cursor belongs to segment {cursor_segment!r}, not {segment_id!r}")
        return cls(index, segment_id, chunk, offset)


def _is_count(value: object) -> bool:
    # `type`, not `isinstance`: JSON's true and false are Python ints too.
    return type(value) is int and 0 <= value < INTEGER_FIELD_LIMIT


@dataclass(frozen=True)
class MembersPage:
    customer_ids: list[str]
    next_cursor: ExportCursor | None


class SegmentExport:
    def __init__(self, reader: SegmentReader, budget_seconds: float) -> None:
        self._reader = reader
        self._budget = budget_seconds
        self._chunks: OrderedDict[tuple[str, str, int], tuple[list[str], int] | None] = OrderedDict()

    async def _chunk(self, index: str, segment_id: str, chunk: int) -> tuple[list[str], int] | None:
        key = (index, segment_id, chunk)
        if key in self._chunks:
            self._chunks.move_to_end(key)
            return self._chunks[key]
        found = await self._reader.chunk_members(index, segment_id, chunk, self._budget)
        self._chunks[key] = found
        if len(self._chunks) > CACHED_CHUNKS:
            self._chunks.popitem(last=False)
        return found

    async def page(self, start: ExportCursor, limit: int) -> MembersPage:
        """Up to `limit` ids from `start` on, crossing chunk documents as needed."""
        ids: list[str] = []
        chunk, offset = start.chunk, start.offset
        while True:
            found = await self._chunk(start.index, start.segment_id, chunk)
            if found is None:
                if chunk == start.chunk:
                    raise InvalidCursor(f"segment {start.segment_id} has no chunk {chunk} in index {start.index}")
                return MembersPage(ids, None)
            members, chunks = found
            taken = members[offset : offset + limit - len(ids)]
            ids.extend(taken)
            offset += len(taken)
            if offset < len(members):  # the page is full inside this chunk
                return MembersPage(ids, ExportCursor(start.index, start.segment_id, chunk, offset))
            if chunk + 1 >= chunks:
                return MembersPage(ids, None)
            chunk, offset = chunk + 1, 0
            if len(ids) >= limit:
                return MembersPage(ids, ExportCursor(start.index, start.segment_id, chunk, 0))
