"""Reads a calculation's results folder back: the manifest and each segment's members.

The calculation writes each segment into one file, unsorted; the ids are sorted here, so exports
page through them in order. Members stay in Arrow from the Parquet file to the chunk documents'
JSON (see `chunk_documents_from_arrow`): on a machine shared with Elasticsearch, a Python object
per membership would take the CPU that indexing needs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from resources.lake.manifest import CalculationManifest
from resources.lake.storage import Lake
from resources.publishing.index_writer import chunk_documents_from_arrow, string_bytes
from resources.targeting import SegmentAttributes

# Beyond this many bitmap bytes per id, sorting the keys is cheaper than marking and reading them;
# beyond the whole's cap, the memory is not worth it.
_BITMAP_SPAN_PER_ROW = 32
_BITMAP_MAX_BYTES = 128 << 20


class ResultsUnreadable(ValueError):
    pass


@dataclass
class ResultsRead:
    """What a tolerant read of a results folder met: the parts it could not read (path, why), and
    the segments it did read. Each segment is in one part, so the segments of an unreadable part
    are those with members in the manifest that no readable part held."""

    unreadable: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    segments: set[str] = dataclasses.field(default_factory=set)

    def lost_segments(self, member_counts: dict[str, int]) -> list[str]:
        if not self.unreadable:
            return []
        return sorted(s for s, members in member_counts.items() if members > 0 and s not in self.segments)


def _read_results_file(path: str, fs: Any) -> Any:
    """A results file, its page checksums verified: Spark writes them, and a flipped bit that
    still decodes would otherwise be indexed as other customer ids with the same member counts."""
    try:
        # segment_id as a dictionary, straight from the Parquet dictionary pages: a few distinct
        # values over millions of rows, never made into one string per row.
        return pq.read_table(
            path,
            filesystem=fs,
            columns=["segment_id", "customer_id"],
            read_dictionary=["segment_id"],
            page_checksum_verification=True,
        )
    except (OSError, ValueError) as error:  # pyarrow's ArrowIOError is an OSError, ArrowInvalid a ValueError
        raise ResultsUnreadable(
            f"results file {path} cannot be read ({error}); the served alias is unchanged. "
            "Recompute the partition to write its results again."
        ) from error


def _sorted(customer_ids: pa.Array) -> pa.Array:
    """The ids in byte order. Sorted ids are worth their cost: Elasticsearch indexes them faster and
    stores them smaller than the same ids unsorted (measured: its load about 20% and its refresh
    about half of the unsorted one's)."""
    if len(customer_ids) < 2:
        return customer_ids
    fixed = _sorted_fixed_width(customer_ids)
    if fixed is not None:
        return fixed
    if pc.all(pc.less_equal(customer_ids[:-1], customer_ids[1:])).as_py():
        return customer_ids
    return customer_ids.take(pc.sort_indices(customer_ids))


def _sorted_fixed_width(customer_ids: pa.Array) -> pa.Array | None:
    """Ids all of one length (most id schemes) sorted by numpy, straight from Arrow's buffers, as
    rows of bytes packed into integer keys where they fit (see `_sorted_rows`). 3x to 6x faster
    than Arrow's sort of variable-length strings. None when the lengths differ or an id is null."""
    string_type = pa.types.is_string(customer_ids.type) or pa.types.is_large_string(customer_ids.type)
    if customer_ids.null_count or not string_type:
        return None
    offsets, text = string_bytes(customer_ids)
    width = int(offsets[1] - offsets[0])
    if width == 0 or not np.all(np.diff(offsets) == width):
        return None
    ordered = _sorted_rows(text.reshape(len(customer_ids), width))
    if ordered is None:
        return customer_ids
    new_offsets = np.arange(0, (len(customer_ids) + 1) * width, width, dtype=offsets.dtype)
    return pa.Array.from_buffers(customer_ids.type, len(customer_ids), [None, pa.py_buffer(new_offsets), pa.py_buffer(ordered)])


@dataclass(frozen=True)
class _KeyField:
    """A byte position where the ids differ, as a bit field of their integer key."""

    position: int
    low: int  # its smallest byte, stored as 0
    bits: int  # enough for its largest byte minus `low`


def _key_fields(rows: np.ndarray) -> list[_KeyField] | None:
    """The byte positions that vary between the rows, each as few bits as its range of bytes takes,
    or None when they take more than 64 bits. Positions where every id holds the same byte do not
    change the order and take none: ids of ten decimal digits after a prefix need 40 bits."""
    fields, total = [], 0
    for position in range(rows.shape[1]):
        column = rows[:, position]
        low, high = int(column.min()), int(column.max())
        if high > low:
            fields.append(_KeyField(position, low, (high - low).bit_length()))
            total += fields[-1].bits
            if total > 64:
                return None
    return fields


def _sorted_rows(rows: np.ndarray) -> np.ndarray | None:
    """Rows of bytes (one id each) in byte order, or None when they are in order already.

    Each row becomes an integer key, its varying bytes side by side as bit fields, first byte
    highest, so that the keys sort as the rows do (32-bit keys where they fit: numpy sorts them
    faster). Rows too varied for 64 bits are sorted as byte strings."""
    fields = _key_fields(rows)
    if fields is None:
        strings = rows.reshape(-1).view(f"S{rows.shape[1]}")
        return None if np.all(strings[:-1] <= strings[1:]) else np.sort(strings).view(np.uint8)
    total_bits = sum(f.bits for f in fields)
    key_type = np.uint32 if total_bits <= 32 else np.uint64
    shifts = _shifts(fields)
    keys = np.zeros(len(rows), dtype=key_type)
    for field, shift in zip(fields, shifts):
        keys |= (rows[:, field.position] - np.uint8(field.low)).astype(key_type) << key_type(shift)
    if np.all(keys[:-1] <= keys[1:]):
        return None
    ordered_keys = _sorted_keys(keys, total_bits)
    ordered = np.empty_like(rows)
    ordered[:] = rows[0]  # the positions that do not vary
    for field, shift in zip(fields, shifts):
        field_values = (ordered_keys >> key_type(shift)) & key_type((1 << field.bits) - 1)
        ordered[:, field.position] = field_values.astype(np.uint8) + np.uint8(field.low)
    return ordered.reshape(-1)


def _shifts(fields: list[_KeyField]) -> list[int]:
    """Where each field sits in the key: the first one highest."""
    after = np.cumsum([f.bits for f in fields][::-1])[::-1]
    return [int(a) - f.bits for a, f in zip(after, fields)]


def _sorted_keys(keys: np.ndarray, total_bits: int) -> np.ndarray:
    """Unique keys from a small enough range are marked in a bitmap and read back in order, 3x
    faster than numpy's sort of them (measured); the others are sorted."""
    if (1 << total_bits) <= min(_BITMAP_SPAN_PER_ROW * len(keys), _BITMAP_MAX_BYTES):
        seen = np.zeros(1 << total_bits, dtype=np.bool_)
        seen[keys] = True
        ordered = np.flatnonzero(seen).astype(keys.dtype)
        if len(ordered) == len(keys):  # else an id is repeated, and a bitmap holds it once
            return ordered
    return np.sort(keys)


def _file_segments(fs: Any, path: str) -> list[tuple[str, pa.Array]]:
    """One results file: (segment_id, its customer ids sorted) per segment in it."""
    table = _read_results_file(path, fs).combine_chunks()  # unifies the row groups' dictionaries
    if table.num_rows == 0:
        return []
    segments = table.column("segment_id").chunk(0)
    if segments.null_count:
        raise ResultsUnreadable(f"results file {path} has memberships without a segment_id; recompute the partition.")
    codes = segments.indices.to_numpy()
    customers = table.column("customer_id").chunk(0)
    if len(segments.dictionary) > 1:
        # Segments together: a stable sort of the segment codes, far cheaper than sorting by id;
        # as 16-bit integers numpy sorts them by radix (measured 4x faster than 32-bit ones).
        order = np.argsort(codes.astype(np.int16) if len(segments.dictionary) <= 1 << 15 else codes, kind="stable")
        codes = codes[order]
        customers = customers.take(pa.array(order))
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    ends = np.r_[starts[1:], len(codes)]
    return [
        (segments.dictionary[codes[start]].as_py(), _sorted(customers.slice(start, end - start)))
        for start, end in zip(starts.tolist(), ends.tolist())
    ]


def segment_members(lake: Lake, results_uri: str, read: ResultsRead | None = None) -> Iterator[tuple[str, pa.Array]]:
    """(segment_id, its customer ids, sorted, as an Arrow array) for every segment with members.

    The calculation writes each segment into one file, in no particular order. The next file is
    read and sorted in a second thread (Arrow releases the GIL) while this one is being sent. The
    smallest file comes first, so that the first documents are ready soonest. A file that cannot
    be read raises `ResultsUnreadable`, unless `read` is given: then it is noted there and skipped.
    """
    fs, _ = lake.filesystem()
    paths = lake.parquet_files(results_uri, smallest_first=True)
    with ThreadPoolExecutor(1, thread_name_prefix="results-prefetch") as prefetch:
        upcoming = [prefetch.submit(_file_segments, fs, path) for path in paths[:1]]
        for position in range(len(paths)):
            if position + 1 < len(paths):
                upcoming.append(prefetch.submit(_file_segments, fs, paths[position + 1]))
            try:
                segments = upcoming[position].result()
            except ResultsUnreadable as error:
                if read is None:
                    raise
                read.unreadable.append((paths[position], str(error.__cause__ or error)))
                segments = []
            upcoming[position] = None  # type: ignore[call-overload]  # let the file's memory go
            for segment_id, customers in segments:
                if read is not None:
                    read.segments.add(segment_id)
                yield segment_id, customers


def segment_documents(
    lake: Lake, results_uri: str, manifest: CalculationManifest, chunk_size: int, read: ResultsRead | None = None
) -> Iterator[dict[str, Any]]:
    """Chunk documents of every segment in the manifest, zero-member segments included. With `read`,
    unreadable parts are noted there, and their segments get no document (the caller decides)."""
    by_id = {s.segment_id: s.attributes for s in manifest.segments}
    common = {
        "segment_type": manifest.segment_type,
        "partition_key": manifest.partition_key,
        "calculated_at": manifest.calculated_at,
    }

    def attributes(segment_id: str) -> dict[str, Any]:
        attrs = by_id.get(segment_id) or SegmentAttributes()
        return {
            **common,
            "segment_id": segment_id,
            **attrs.model_dump(),
            "label_pairs": [f"{k}:{v}" for k, v in sorted(attrs.labels.items())],
        }

    seen: set[str] = set()
    for segment_id, customers in segment_members(lake, results_uri, read):
        seen.add(segment_id)
        yield from chunk_documents_from_arrow(attributes(segment_id), customers, chunk_size)
    lost = set(read.lost_segments(manifest.member_counts)) if read is not None else set()
    for segment_id in sorted(set(by_id) - seen - lost):
        yield from chunk_documents_from_arrow(attributes(segment_id), pa.array([], pa.string()), chunk_size)
