"""One calculation into a new index: load, tolerate what the settings allow, verify.

Readers never see this index until `publication.publish_index` moves the aliases to it, and only
an index verified here can be published. An index whose load or verification failed is deleted;
where even that fails (the cluster is gone), retention collects it after the next switch.

With an error tolerance above 0, a segment with a chunk that still failed after every retry, or
in a results part that cannot be read, is not served half-loaded: its chunks are removed from the
new index and the segment's documents in the served index, if any, are copied over, so it keeps
answering from the previous calculation. An unreadable part counts against the tolerance as the
chunk documents its segments would have made.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import elastic_transport

from resources.lake.manifest import read_manifest
from resources.lake.storage import Lake
from resources.names import index_name
from resources.publishing.bulk_load import (
    BulkSettings,
    ElasticsearchUnreachable,
    LoadReport,
)
from resources.publishing.index_writer import (
    SegmentCount,
    SegmentIndexWriter,
    segment_of,
)
from resources.publishing.results_reader import ResultsRead, segment_documents


class IngestionFailed(RuntimeError):
    def __init__(self, message: str, metadata: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.metadata = metadata or {}


@dataclass(frozen=True)
class IngestionSettings:
    chunk_size: int = 5_000
    bulk: BulkSettings = field(default_factory=BulkSettings)
    error_tolerance: float = 0.0  # the share of chunk documents that may fail after retries


@dataclass
class IngestionReport:
    index: str
    served_before: str | None
    calculation_run_id: str = ""  # the run that computed the loaded results (the manifest's)
    documents: int = 0
    memberships: int = 0
    segments: int = 0
    bytes: int = 0
    load_seconds: float = 0.0
    seconds: float = 0.0
    requests: int = 0
    retried_documents: int = 0
    failed_documents: int = 0
    # segment_id -> what it serves instead: "previous calculation from <index>" or "nothing (...)".
    failed_segments: dict[str, str] = field(default_factory=dict)
    unreadable_parts: dict[str, str] = field(default_factory=dict)  # results file -> why
    mismatches: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.mismatches


def completeness_mismatches(expected: dict[str, int], found: dict[str, SegmentCount]) -> dict[str, Any]:
    """Segments whose members in the index differ from what was expected, or with a chunk missing."""
    mismatches = {}
    for segment_id in sorted(set(expected) | set(found)):
        want = expected.get(segment_id)
        got = found.get(segment_id)
        if want is None or got is None or got.members != want or got.documents != got.chunks:
            mismatches[segment_id] = {
                "expected_members": want,
                "index_members": got.members if got else 0,
                "index_documents": got.documents if got else 0,
                "chunks": got.chunks if got else 0,
            }
    return mismatches


def ingest_calculation(
    writer: SegmentIndexWriter,
    lake: Lake,
    segment_type: str,
    partition_key: str,
    run_id: str,
    settings: IngestionSettings,
    confirm_lock: Callable[[], None] = lambda: None,
) -> IngestionReport:
    """Builds and verifies the index of one calculation; raises `IngestionFailed` saying why not.

    `confirm_lock` raises unless the type's lock is still held: a verified index is one that no
    other ingestion of the type ran beside. Whatever it raises deletes the index and goes on."""
    started = time.monotonic()
    results_uri = lake.results_dir(segment_type, partition_key)
    manifest = read_manifest(lake, results_uri)
    name = index_name(writer.prefix, segment_type, partition_key, run_id)
    served = writer.served_indices(segment_type)
    report = IngestionReport(index=name, served_before=served[0] if served else None, calculation_run_id=manifest.run_id)
    meta = {
        "segment_type": segment_type,
        "partition_key": partition_key,
        "run_id": run_id,
        "calculated_at": manifest.calculated_at,
        "verified": False,
    }
    try:
        writer.create_index(name, meta, memberships=manifest.total_members)
        expected = manifest.member_counts
        read = ResultsRead()
        documents = segment_documents(lake, results_uri, manifest, settings.chunk_size, read)
        load = writer.load(name, documents, settings.bulk)
        lost = Failures.of_parts(read, expected, settings.chunk_size)
        report.load_seconds, report.requests = load.seconds, load.requests
        report.retried_documents, report.failed_documents = load.retried_documents, len(load.failed) + lost.documents
        report.unreadable_parts = dict(read.unreadable)
        if load.failed or lost.segments:
            _tolerate(writer, report, load, lost, expected, settings.error_tolerance)
        writer.finish_loading(name)
        found = writer.segment_counts(name)
        report.mismatches = completeness_mismatches(expected, found)
        report.documents = sum(c.documents for c in found.values())
        report.memberships = sum(c.members for c in found.values())
        report.segments = len(found)
        if report.complete:
            report.bytes = writer.store_bytes(name)
            confirm_lock()
            writer.update_meta(name, verified=True, memberships=report.memberships, documents=report.documents)
        else:
            writer.delete_index(name)  # never served: nothing to keep it for
    except (ElasticsearchUnreachable, elastic_transport.ConnectionError, elastic_transport.ConnectionTimeout) as error:
        _delete_quietly(writer, name)
        raise IngestionFailed(
            f"Elasticsearch became unreachable while loading {name}: {error}. The served alias is unchanged "
            f"({report.served_before or 'nothing served yet'}); the partial index is deleted, or retention "
            "deletes it after the next switch.",
            {"index": name},
        ) from error
    except BaseException:
        _delete_quietly(writer, name)
        raise
    report.seconds = round(time.monotonic() - started, 3)
    return report


@dataclass(frozen=True)
class Failures:
    """Segments lost with unreadable results parts, and the chunk documents they would have made."""

    segments: list[str]
    documents: int
    parts: list[tuple[str, str]]

    @classmethod
    def of_parts(cls, read: ResultsRead, expected: dict[str, int], chunk_size: int) -> Failures:
        segments = read.lost_segments(expected)
        documents = sum(-(-expected[s] // chunk_size) for s in segments)  # chunks, rounded up
        return cls(segments, documents, read.unreadable)


def _tolerate(
    writer: SegmentIndexWriter,
    report: IngestionReport,
    load: LoadReport,
    lost: Failures,
    expected: dict[str, int],
    tolerance: float,
) -> None:
    """Within the tolerance, serves each failed segment's previous calculation; beyond it, fails."""
    failed = len(load.failed) + lost.documents
    attempted = load.documents + failed
    rate = failed / attempted if attempted else 0.0
    segments = sorted({segment_of(f.id) for f in load.failed} | set(lost.segments))
    reasons = {f.id: f"{f.status} {f.reason}" for f in load.failed[:5]}
    reasons.update({path: why for path, why in lost.parts[:5]})
    if rate > tolerance:
        raise IngestionFailed(
            f"{failed} of {attempted} chunk documents ({rate:.2%}) failed, above the error tolerance of "
            f"{tolerance:.2%}; segments affected: {', '.join(segments)}. First errors: {reasons}. "
            f"The served alias is unchanged ({report.served_before or 'nothing served yet'}).",
            {"index": report.index, "failed_segments": segments, "unreadable_parts": [p for p, _ in lost.parts]},
        )
    writer.delete_segments(report.index, segments)
    carried: dict[str, int] = {}
    if report.served_before:
        previous = writer.stored_segment_documents(report.served_before, segments)
        carry = writer.load(report.index, previous, BulkSettings(workers=1))
        if carry.failed:
            raise IngestionFailed(
                f"could not carry the previous calculation of {', '.join(segments)} over from "
                f"{report.served_before}: {carry.failed[:3]}",
                {"index": report.index},
            )
        writer.client.indices.refresh(index=report.index)
        carried = {s: c.members for s, c in writer.segment_counts(report.index).items() if s in segments}
    for segment_id in segments:
        if segment_id in carried:
            expected[segment_id] = carried[segment_id]
            report.failed_segments[segment_id] = f"previous calculation from {report.served_before}"
        else:
            expected.pop(segment_id, None)
            report.failed_segments[segment_id] = "nothing: it was not served before"


def _delete_quietly(writer: SegmentIndexWriter, name: str) -> None:
    try:
        writer.delete_index(name)
    except Exception:  # noqa: BLE001 - the cluster may be gone; retention collects the index later
        pass
