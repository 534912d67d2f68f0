"""The manifest of one calculation: written last into its results folder, so that its presence
says the folder is complete, and read by the publisher, the EMR runner and the history."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from resources.lake.storage import MANIFEST_NAME, Lake
from resources.targeting import SegmentAttributes


class ManifestSegment(BaseModel):
    model_config = ConfigDict(frozen=True)

    segment_id: str
    version: int
    member_count: int
    attributes: SegmentAttributes = Field(default_factory=SegmentAttributes)
    # Against the segment's latest earlier calculation (its first: every member entered); absent
    # when that calculation's results are no longer in the lake.
    entered: int | None = None
    exited: int | None = None


class CalculationManifest(BaseModel):
    model_config = ConfigDict(frozen=True)

    segment_type: str
    partition_key: str
    as_of: str  # ISO time of T, the end of the partition's window
    run_id: str
    calculated_at: str  # ISO time the calculation finished
    segments: list[ManifestSegment]  # every computed segment, zero-member ones included, by id
    rows_read: dict[str, int] = Field(default_factory=dict)  # raw table -> rows read
    rejected_rows: dict[str, int] = Field(default_factory=dict)  # "<table>.<reason>" -> rows left out
    seconds: float = 0.0

    @property
    def member_counts(self) -> dict[str, int]:
        return {s.segment_id: s.member_count for s in self.segments}

    @property
    def total_members(self) -> int:
        return sum(s.member_count for s in self.segments)


def manifest_uri(results_uri: str) -> str:
    return f"{results_uri}/{MANIFEST_NAME}"


def read_manifest(lake: Lake, results_uri: str) -> CalculationManifest:
    uri = manifest_uri(results_uri)
    if not lake.exists(uri):
        raise FileNotFoundError(f"no manifest at {uri}: the calculation did not complete")
    return CalculationManifest.model_validate(lake.read_json(uri))


def write_manifest(lake: Lake, results_uri: str, manifest: CalculationManifest) -> None:
    lake.write_json(manifest_uri(results_uri), manifest.model_dump(mode="json", exclude_none=True))
