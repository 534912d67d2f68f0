"""The segment types as `GET /v1/segment-types` gives them (name, description, params' JSON Schema):
what the console's forms are built from."""

from __future__ import annotations

from functools import cache
from typing import Any

from api.config.service import SegmentConfigs


@cache
def segment_types() -> list[dict[str, Any]]:
    # Types are added in code: they do not change while the process runs.
    return SegmentConfigs.segment_types()


def segment_type_named(name: str) -> dict[str, Any] | None:
    return next((t for t in segment_types() if t["name"] == name), None)
