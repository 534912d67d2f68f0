"""Reading a results folder into chunk documents: the Arrow path gives the same JSON as the plain one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from resources.lake.storage import Lake
from resources.publishing.index_writer import chunk_documents, chunk_documents_from_arrow
from resources.lake.manifest import CalculationManifest
from resources.publishing.results_reader import ResultsUnreadable, _sorted, _sorted_fixed_width, segment_documents
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


@pytest.mark.parametrize("bad", ['quote"d', "back\\slash", "tab\there", "nul\x00", "\x1f"])
@pytest.mark.parametrize("string_type", [pa.string(), pa.large_string()])
def test_ids_that_json_must_escape_are_escaped(bad: str, string_type: pa.DataType) -> None:
    ids = ["c1", bad, "c2"]
    padded = pa.array(["x", *ids, "y"], string_type).slice(1, 3)
    [document] = chunk_documents_from_arrow({"segment_id": "s"}, padded, 10)
    assert orjson.loads(orjson.dumps(document))["customer_ids"] == ids


def test_a_byte_to_escape_outside_the_slice_does_not_count() -> None:
    padded = pa.array(['"before', "c1", "c2", 'after"']).slice(1, 2)
    [document] = chunk_documents_from_arrow({"segment_id": "s"}, padded, 10)
    assert isinstance(document["customer_ids"], orjson.Fragment)  # the fast path
    assert orjson.loads(orjson.dumps(document))["customer_ids"] == ["c1", "c2"]


def test_segments_come_back_whole_and_sorted_whatever_the_file_order(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    manifest = write_results(str(lake), "new_customers", "2026-11-25", {"a": ["c3", "c1", "c2"], "b": ["c9"], "zero": []})
    folder = Path(Lake(str(lake)).results_dir("new_customers", "2026-11-25"))
    # One file with the segments interleaved and unsorted, as no calculation should write but a lake may hold.
    for old in folder.glob("*.parquet"):
        old.unlink()
    rows = {"segment_id": ["a", "b", "a", "a"], "customer_id": ["c3", "c9", "c1", "c2"]}
    pq.write_table(pa.table(rows), folder / "part-00000.parquet")

    documents = [orjson.loads(orjson.dumps(d)) for d in segment_documents(Lake(str(lake)), str(folder), CalculationManifest.model_validate(manifest), 2)]

    got = {(d["segment_id"], d["chunk"]): d["customer_ids"] for d in documents}
    assert got == {("a", 0): ["c1", "c2"], ("a", 1): ["c3"], ("b", 0): ["c9"], ("zero", 0): []}
    assert {d["segment_id"]: d["member_count"] for d in documents} == {"a": 3, "b": 1, "zero": 0}


def _one_results_file(tmp_path: Path, rows: dict[str, list], **write_options) -> tuple[Lake, Path, dict]:
    """A results folder whose only file holds these rows, written as given (no calculation wrote it)."""
    lake = Lake(str(tmp_path / "lake"))
    segments = {s: [] for s in rows["segment_id"] if s is not None}
    manifest = write_results(lake.uri, "new_customers", "2026-11-25", segments)
    folder = Path(lake.results_dir("new_customers", "2026-11-25"))
    for old in folder.glob("*.parquet"):
        old.unlink()
    pq.write_table(pa.table(rows), folder / "part-00000.parquet", **write_options)
    return lake, folder, manifest


def test_segments_spread_over_row_groups_with_their_own_dictionaries_come_back_whole(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    members = {s: {f"c{n:05d}" for n in rng.choice(20_000, size=size, replace=False)} for s, size in [("a", 700), ("b", 1), ("c", 300)]}
    rows = [(s, c) for s, ids in members.items() for c in ids]
    rows = [rows[i] for i in rng.permutation(len(rows))]
    # Row groups of 100 rows, each with its own dictionary of segment ids in its own order.
    lake, folder, manifest = _one_results_file(
        tmp_path, {"segment_id": [s for s, _ in rows], "customer_id": [c for _, c in rows]}, row_group_size=100
    )
    for segment in manifest["segments"]:
        segment["member_count"] = len(members[segment["segment_id"]])

    documents = [orjson.loads(orjson.dumps(d)) for d in segment_documents(lake, str(folder), CalculationManifest.model_validate(manifest), 10_000)]

    assert {d["segment_id"]: d["customer_ids"] for d in documents} == {s: sorted(ids) for s, ids in members.items()}


def test_a_membership_without_a_segment_id_makes_the_file_unreadable(tmp_path: Path) -> None:
    lake, folder, manifest = _one_results_file(tmp_path, {"segment_id": ["a", None, "a"], "customer_id": ["c1", "c2", "c3"]})

    with pytest.raises(ResultsUnreadable, match="part-00000.parquet has memberships without a segment_id"):
        list(segment_documents(lake, str(folder), CalculationManifest.model_validate(manifest), 10))


@pytest.mark.parametrize("string_type", [pa.string(), pa.large_string()])
@pytest.mark.parametrize(
    "widths, prefix",
    [((9,), ""), ((1,), ""), ((8,), "c00"), ((3, 5, 9), ""), ((36,), ""), ((7,), "customer-")],
    ids=["9 varying", "1 byte", "8 varying after a prefix", "three lengths", "36 varying", "7 varying after a prefix"],
)
def test_ids_are_sorted_in_byte_order_whatever_their_lengths(
    string_type: pa.DataType, widths: tuple[int, ...], prefix: str
) -> None:
    rng = np.random.default_rng(len(widths))
    alphabet = list("0123456789abcXYZ_.:@-")
    ids = [prefix + "".join(rng.choice(alphabet, size=int(rng.choice(widths)))) for _ in range(3000)]
    padded = pa.array(["~first", *ids, "~last"], string_type).slice(1, len(ids))  # a slice, as a file's segment is
    got = _sorted(padded)
    assert (_sorted_fixed_width(padded) is not None) == (len(widths) == 1)  # the numpy path, where it applies
    assert got.type == string_type
    assert got.to_pylist() == sorted(ids, key=lambda i: i.encode())


@pytest.mark.parametrize(
    "make_id",
    [lambda n: f"c{n:08d}", lambda n: f"{n:036d}", lambda n: f"c{n}"],
    ids=["8 varying", "36 varying", "three lengths"],
)
@pytest.mark.parametrize("order", ["sorted", "last two swapped", "first two swapped"])
def test_ids_found_in_order_are_kept_and_ids_almost_in_order_are_sorted(make_id, order: str) -> None:
    ids = sorted((make_id(n) for n in range(0, 30_000, 7)), key=str.encode)
    given = list(ids)
    if order == "last two swapped":
        given[-2:] = given[:-3:-1]
    elif order == "first two swapped":
        given[:2] = given[1::-1]
    assert _sorted(pa.array(given)).to_pylist() == ids


def test_the_smallest_results_file_is_read_first(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    manifest = write_results(lake.uri, "new_customers", "2026-11-25", {"big": [], "small": [], "middle": []})
    folder = Path(lake.results_dir("new_customers", "2026-11-25"))
    for old in folder.glob("*.parquet"):
        old.unlink()
    for name, (segment, size) in zip(["part-00000", "part-00001", "part-00002"], [("big", 3000), ("small", 10), ("middle", 300)]):
        pq.write_table(pa.table({"segment_id": [segment] * size, "customer_id": [f"c{n:06d}" for n in range(size)]}), folder / f"{name}.parquet")

    documents = list(segment_documents(lake, str(folder), CalculationManifest.model_validate(manifest), 10_000))

    assert [d["segment_id"] for d in documents] == ["small", "middle", "big"]
    assert lake.parquet_files(str(folder)) == [str(folder / f"part-0000{n}.parquet") for n in range(3)]  # by name otherwise


@pytest.mark.parametrize(
    "ids",
    [
        [f"c{n:05d}" for n in range(0, 100_000, 3)],  # 20 bits, dense: the bitmap
        [f"c{n:05d}" for n in range(0, 100_000, 3)] + ["c00042", "c00042"],  # the same with an id repeated
        [f"{n:010d}" for n in range(10**9, 10**10, 10**9 // 7 + 1)] + ["0000000001"],  # 40 bits: 64-bit keys
        [f"{n:017d}" for n in range(10**16, 10**17, 10**15 + 1)] + ["0" * 17, "9" * 17],  # 17 x 4 bits: past 64
        ["a~", "a!", "a~", "a!", "a!"],  # one varying bit field from '!' to '~', repeated
    ],
    ids=["dense", "dense with a repeated id", "40 bits", "past 64 bits", "one field"],
)
def test_ids_packed_into_integer_keys_come_back_sorted(ids: list[str]) -> None:
    shuffled = list(np.random.default_rng(5).permutation(ids))
    assert _sorted(pa.array(shuffled)).to_pylist() == sorted(ids, key=str.encode)
