"""Reading a results folder into chunk documents: the Arrow path gives the same JSON as the plain one."""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from resources.lake import Lake
from resources.segment_index import chunk_documents, chunk_documents_from_arrow
from resources.segment_results import segment_documents
from tests.integration.results_folder import write_results


@pytest.mark.parametrize("count", [0, 1, 6, 7, 8, 50])
def test_arrow_chunks_serialize_exactly_as_plain_ones(count: int) -> None:
    ids = [f"c{n:04d}" for n in range(count)]
    attributes = {"segment_id": "s", "labels": {"a": "b"}}
    padded = pa.array(["before", *ids, "after"]).slice(1, count)  # a slice, as a file's segment is
    arrow = [orjson.dumps(d) for d in chunk_documents_from_arrow(attributes, padded, 7)]
    plain = [orjson.dumps(d) for d in chunk_documents(attributes, ids, 7)]
    assert arrow == plain
    assert len(plain) == max(1, -(-count // 7))


def test_ids_that_json_must_escape_are_escaped() -> None:
    ids = ['quote"d', "back\\slash", "tab\there"]
    [document] = chunk_documents_from_arrow({"segment_id": "s"}, pa.array(ids), 10)
    assert orjson.loads(orjson.dumps(document))["customer_ids"] == ids


def test_segments_come_back_whole_and_sorted_whatever_the_file_order(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    manifest = write_results(str(lake), "new_customers", "2026-11-25", {"a": ["c3", "c1", "c2"], "b": ["c9"], "zero": []})
    folder = Path(Lake(str(lake)).results_dir("new_customers", "2026-11-25"))
    # One file with the segments interleaved and unsorted, as no calculation should write but a lake may hold.
    for old in folder.glob("*.parquet"):
        old.unlink()
    rows = {"segment_id": ["a", "b", "a", "a"], "customer_id": ["c3", "c9", "c1", "c2"]}
    pq.write_table(pa.table(rows), folder / "part-00000.parquet")

    documents = [orjson.loads(orjson.dumps(d)) for d in segment_documents(Lake(str(lake)), str(folder), manifest, 2)]

    got = {(d["segment_id"], d["chunk"]): d["customer_ids"] for d in documents}
    assert got == {("a", 0): ["c1", "c2"], ("a", 1): ["c3"], ("b", 0): ["c9"], ("zero", 0): []}
    assert {d["segment_id"]: d["member_count"] for d in documents} == {"a": 3, "b": 1, "zero": 0}
