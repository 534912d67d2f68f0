"""The registry of segment types. A new type is one module here plus one entry below."""

from __future__ import annotations

from segmentation_assets.core.segment_types.base import SegmentParams, SegmentType
from segmentation_assets.core.segment_types.frequent_buyers import FREQUENT_BUYERS
from segmentation_assets.core.segment_types.high_spenders import HIGH_SPENDERS
from segmentation_assets.core.segment_types.lapsed_customers import LAPSED_CUSTOMERS
from segmentation_assets.core.segment_types.new_customers import NEW_CUSTOMERS

SEGMENT_TYPES: dict[str, SegmentType] = {
    t.name: t for t in (NEW_CUSTOMERS, FREQUENT_BUYERS, HIGH_SPENDERS, LAPSED_CUSTOMERS)
}

__all__ = ["SEGMENT_TYPES", "SegmentParams", "SegmentType"]
