"""The registry of segment types. A new type is one module here plus one line below."""

from __future__ import annotations

from segmentation_assets.segment_types.base import SegmentParams, SegmentType
from segmentation_assets.segment_types.new_customers import NEW_CUSTOMERS

SEGMENT_TYPES: dict[str, SegmentType] = {t.name: t for t in (NEW_CUSTOMERS,)}

__all__ = ["SEGMENT_TYPES", "SegmentParams", "SegmentType"]
