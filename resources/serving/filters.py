"""Lookup filters, applied in the process to a customer's whole segment list.

The cache holds each customer's full list once, so one entry answers every filter.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from resources.targeting import LabelFilters, parse_labels


@dataclass(frozen=True)
class SegmentFilter:
    segment_types: frozenset[str] = frozenset()
    attributes: dict[str, str] = field(default_factory=dict)  # only the attributes given
    labels: LabelFilters = ()

    @classmethod
    def of(
        cls,
        *,
        segment_types: Iterable[str] = (),
        attributes: Mapping[str, str] | None = None,
        labels: Iterable[str] = (),
    ) -> SegmentFilter:
        return cls(frozenset(segment_types), dict(attributes or {}), parse_labels(labels))

    @property
    def is_empty(self) -> bool:
        return not (self.segment_types or self.attributes or self.labels)

    def matches(self, segment: dict[str, Any]) -> bool:
        if self.segment_types and segment["segment_type"] not in self.segment_types:
            return False
        if any(segment.get(name) != value for name, value in self.attributes.items()):
            return False
        segment_labels = segment.get("labels") or {}
        return all(segment_labels.get(k) == v for k, v in self.labels)

    def apply(self, segments: list[dict[str, Any]], archived: Collection[str]) -> list[dict[str, Any]]:
        """The segments that match and are not archived: archived ones leave lookups at once."""
        if self.is_empty and not archived:
            return segments
        return [s for s in segments if s["segment_id"] not in archived and self.matches(s)]

    def apply_serialized(self, segments: bytes, archived: Collection[str]) -> list[dict[str, Any]] | orjson.Fragment:
        """`apply` to a segment list as JSON, for orjson to write: as it is when nothing can be left out."""
        if self.is_empty and not archived:
            return orjson.Fragment(segments)
        return self.apply(orjson.loads(segments), archived)
