"""Paging across chunk documents and the export cursor, over a reader that holds chunks in memory."""

from __future__ import annotations

import asyncio
import base64

import orjson
import pytest

from resources.serving.export import ExportCursor, InvalidCursor, SegmentExport


class ChunkedReader:
    def __init__(self, members: list[str], chunk_size: int) -> None:
        self.chunks = [members[i : i + chunk_size] for i in range(0, len(members), chunk_size)] or [[]]
        self.reads = 0

    async def chunk_members(self, index: str, segment_id: str, chunk: int, budget_seconds: float):
        self.reads += 1
        if chunk >= len(self.chunks):
            return None
        return list(self.chunks[chunk]), len(self.chunks)


INDEX = "p-new_customers-2026-11-25-abcd1234"


def export_all(export: SegmentExport, limit: int) -> tuple[list[str], int]:
    cursor: ExportCursor | None = ExportCursor(INDEX, "seg", 0, 0)
    ids: list[str] = []
    pages = 0
    while cursor is not None:
        # Through the wire format, as a client would hand it back.
        cursor = ExportCursor.decode(cursor.encode(), segment_id="seg", index_prefix="p")
        page = asyncio.run(export.page(cursor, limit))
        assert len(page.customer_ids) <= limit
        ids += page.customer_ids
        cursor = page.next_cursor
        pages += 1
    return ids, pages


@pytest.mark.parametrize("members", [0, 1, 5, 6, 7, 23])
@pytest.mark.parametrize("limit", [1, 2, 5, 6, 100])
def test_every_member_once_in_order_with_no_empty_last_page(members: int, limit: int) -> None:
    ids = [f"c{i:03d}" for i in range(members)]
    ids_back, pages = export_all(SegmentExport(ChunkedReader(ids, chunk_size=5), budget_seconds=1), limit)
    assert ids_back == ids
    assert pages == max(1, -(-members // limit))


def test_a_page_sequence_reads_each_chunk_once() -> None:
    reader = ChunkedReader([f"c{i:03d}" for i in range(20)], chunk_size=10)
    export_all(SegmentExport(reader, budget_seconds=1), limit=3)
    assert reader.reads == 2


@pytest.mark.parametrize(
    "text",
    [
        "garbage",
        ExportCursor("other-index", "seg", 0, 0).encode(),  # not one of our indices
        ExportCursor("p-read", "seg", 0, 0).encode(),  # an alias: its pages would follow its switches
        ExportCursor("p-new_customers", "seg", 0, 0).encode(),
        ExportCursor("p-new_customers-*", "seg", 0, 0).encode(),
        ExportCursor(INDEX, "seg", -1, 0).encode(),
        ExportCursor(INDEX, "seg", 0, -5).encode(),
        "WzIsInAtaW5kZXgiLCJzZWciLDAsMF0",  # [2, ...]: a version this API never gave out
        # JSON booleans are Python ints; Elasticsearch would refuse `chunk: true` with a 400
        ExportCursor(INDEX, "seg", True, 0).encode(),  # type: ignore[arg-type]
        ExportCursor(INDEX, "seg", 0, False).encode(),  # type: ignore[arg-type]
        base64.urlsafe_b64encode(orjson.dumps([True, INDEX, "seg", 0, 0])).decode(),
        ExportCursor(INDEX, "seg", 2**31, 0).encode(),  # beyond the `chunk` field's integers
    ],
)
def test_cursors_not_given_out_by_this_api_are_rejected(text: str) -> None:
    with pytest.raises(InvalidCursor):
        ExportCursor.decode(text, segment_id="seg", index_prefix="p")


def test_a_cursor_of_another_segment_is_rejected() -> None:
    with pytest.raises(InvalidCursor, match="seg-a"):
        ExportCursor.decode(ExportCursor(INDEX, "seg-a", 0, 0).encode(), segment_id="seg-b", index_prefix="p")
