"""Names of the Elasticsearch indices and aliases the platform owns, all under one prefix (SPEC 2)."""

from __future__ import annotations

import re


def type_alias(prefix: str, segment_type: str) -> str:
    """Points at the one index that serves a segment type."""
    return f"{prefix}-{segment_type}"


def read_alias(prefix: str) -> str:
    """Points at the served index of every type: what lookups search."""
    return f"{prefix}-read"


def index_name(prefix: str, segment_type: str, partition_key: str, run_id: str) -> str:
    partition = re.sub(r"[^0-9a-z-]", "", partition_key.lower())
    return f"{prefix}-{segment_type}-{partition}-{run_id[:8].lower()}"


def type_index_pattern(prefix: str, segment_type: str) -> str:
    return f"{prefix}-{segment_type}-*"
