"""Reads a calculation's results folder back: the manifest and each segment's sorted members."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from resources.lake import MANIFEST_NAME, Lake
from resources.segment_index import chunk_documents


class ResultsUnreadable(ValueError):
    pass


def _read_results_file(path: str, fs: Any) -> Any:
    """A results file, its page checksums verified: Spark writes them, and a flipped bit that
    still decodes would otherwise be indexed as other customer ids with the same member counts."""
    try:
        return pq.read_table(path, filesystem=fs, columns=["segment_id", "customer_id"], page_checksum_verification=True)
    except (OSError, ValueError) as error:  # pyarrow's ArrowIOError is an OSError, ArrowInvalid a ValueError
        raise ResultsUnreadable(
            f"results file {path} cannot be read ({error}); the served alias is unchanged. "
            "Recompute the partition to write its results again."
        ) from error


def read_manifest(lake: Lake, results_uri: str) -> dict[str, Any]:
    manifest_uri = f"{results_uri}/{MANIFEST_NAME}"
    if not lake.exists(manifest_uri):
        raise FileNotFoundError(f"no manifest at {manifest_uri}: the calculation did not complete")
    return lake.read_json(manifest_uri)


def segment_members(lake: Lake, results_uri: str) -> Iterator[tuple[str, list[str]]]:
    """(segment_id, sorted customer ids) for every segment with members.

    The calculation writes each segment into one file; a file is read whole, sorted, and cut at
    segment boundaries.
    """
    fs, _ = lake.filesystem()
    for path in lake.parquet_files(results_uri):
        table = _read_results_file(path, fs)
        if table.num_rows == 0:
            continue
        table = table.sort_by([("segment_id", "ascending"), ("customer_id", "ascending")])
        segment_ids = table.column("segment_id").to_numpy(zero_copy_only=False)
        customer_ids = table.column("customer_id").to_pylist()
        starts = np.flatnonzero(np.r_[True, segment_ids[1:] != segment_ids[:-1]])
        ends = np.r_[starts[1:], len(segment_ids)]
        for start, end in zip(starts.tolist(), ends.tolist()):
            yield str(segment_ids[start]), customer_ids[start:end]


def segment_documents(
    lake: Lake, results_uri: str, manifest: dict[str, Any], chunk_size: int
) -> Iterator[dict[str, Any]]:
    """Chunk documents of every segment in the manifest, zero-member segments included."""
    by_id = {s["segment_id"]: s for s in manifest["segments"]}
    common = {
        "segment_type": manifest["segment_type"],
        "partition_key": manifest["partition_key"],
        "calculated_at": manifest["calculated_at"],
    }

    def attributes(segment_id: str) -> dict[str, Any]:
        attrs = dict(by_id.get(segment_id, {}).get("attributes", {}))
        labels = attrs.get("labels") or {}
        return {
            **common,
            "segment_id": segment_id,
            "name": attrs.get("name"),
            "store_id": attrs.get("store_id"),
            "category": attrs.get("category"),
            "city": attrs.get("city"),
            "country": attrs.get("country"),
            "labels": labels,
            "label_pairs": [f"{k}:{v}" for k, v in sorted(labels.items())],
        }

    seen: set[str] = set()
    for segment_id, customers in segment_members(lake, results_uri):
        seen.add(segment_id)
        yield from chunk_documents(attributes(segment_id), customers, chunk_size)
    for segment_id in sorted(set(by_id) - seen):
        yield from chunk_documents(attributes(segment_id), [], chunk_size)
