"""The names every side shares: valid ids, Elasticsearch index and alias names, Redis keys, circuits.

A leaf: it imports nothing of the project, so the API, the publisher and the Spark job can all use it.
Every index and alias lives under one prefix, so several deployments can share a cluster.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import StringConstraints

# A valid customer, store or segment id.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$"
EntityId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]

# Circuit breakers of the API, one per dependency (shown on /metrics by these names).
ELASTICSEARCH_CIRCUIT = "elasticsearch"
REDIS_CIRCUIT = "redis"
COORDINATION_CIRCUIT = "redis_coordination"  # when the coordination keys have a Redis of their own
POSTGRESQL_CIRCUIT = "postgresql"


# Redis keys. Those read or written together, in one script or one read, carry the same hash tag
# (the part in braces): a Redis Cluster then keeps them in one slot, where such a command can run.
# Every key starts with the prefix, so `SCAN MATCH <prefix>:*` finds a deployment's keys. The lookup
# cache's entries carry no tag: spread over every slot, they spread over every master.
SERVED_TAG = "{served}"


def generation_key(prefix: str) -> str:
    """Redis counter bumped by every alias switch; the API's cache keys on it. Shares its slot
    with `served_indices_key`."""
    return f"{prefix}:{SERVED_TAG}:generation"


def served_indices_key(prefix: str) -> str:
    """Redis hash: segment type -> "<generation> <index>", the index its alias serves and the
    generation that switch was given (see `served_index_value`). Written with the counter, by
    one script, at every switch, and read with it in one."""
    return f"{prefix}:{SERVED_TAG}"


def untagged_served_keys(prefix: str) -> tuple[str, str]:
    """The counter's and the hash's names before they carried a hash tag (releases before Redis
    Cluster support); an API process carries what they hold over once (resources/serving/cache.py)."""
    return f"{prefix}:generation", f"{prefix}:served"


def served_index_value(generation: int, index: str) -> str:
    """A `served_indices_key` field's value (index names hold no space)."""
    return f"{generation} {index}"


def ingestion_lock_key(prefix: str, segment_type: str) -> str:
    """Held by the one ingestion of a segment type that may run. A key of its own (no tag): every
    command on it names it alone."""
    return f"{prefix}:ingestion-lock:{segment_type}"


def key_revocations_channel(prefix: str) -> str:
    """Redis pub/sub channel: the name of each API key revoked, for the API processes' key caches."""
    return f"{prefix}:api-keys:revoked"


class CacheKind(StrEnum):
    """What a lookup cache entry holds; also the `kind` label of the cache metrics. One letter
    each: the kind is in every key, and millions of keys pay for each byte."""

    MEMBERSHIPS = "m"  # a customer's segment ids, by the generation each type's index was served at
    SEGMENT = "s"  # a segment's summary, under the generation it was read at
    CATALOG = "c"  # an index's catalog, a line per segment ("i" held the older JSON form)
    HOLDS = "h"  # whether an index has a customer in a segment: "1" or "0"


def lookup_key(prefix: str, kind: CacheKind, item: str) -> str:
    """A cached lookup answer. The item says what it is valid for: an index (which never changes
    once served), or a generation of the served indices. No hash tag: many customers' entries are
    read at once, and on a Redis Cluster they are read per slot (resources/redis_clients.py)."""
    return f"{prefix}:lookup:{kind}:{item}"


def type_alias(prefix: str, segment_type: str) -> str:
    """Points at the one index that serves a segment type."""
    return f"{prefix}-{segment_type}"


def read_alias(prefix: str) -> str:
    """Points at the served index of every type: what lookups search."""
    return f"{prefix}-read"


def index_name(prefix: str, segment_type: str, partition_key: str, run_id: str) -> str:
    partition = re.sub(r"[^0-9a-z-]", "", partition_key.lower())
    return f"{prefix}-{segment_type}-{partition}-{run_id[:8].lower()}"


def is_index_name(prefix: str, name: str, segment_type: str | None = None) -> bool:
    """Whether `name` can be one calculation's index under `prefix` (of `segment_type`, when
    given), as `index_name` makes them (a daily or hourly partition): not an alias (which moves
    between calculations), a pattern, a list, another cluster's index, nor, where prefixes share a
    cluster, another prefix's index or alias."""
    partition = r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:-[0-9]{4})?"
    type_name = re.escape(segment_type) if segment_type else "[a-z][a-z0-9_]*"
    return re.fullmatch(rf"{re.escape(prefix)}-{type_name}-{partition}-[0-9a-z]{{1,8}}", name) is not None


def type_index_pattern(prefix: str, segment_type: str) -> str:
    return f"{prefix}-{segment_type}-*"
