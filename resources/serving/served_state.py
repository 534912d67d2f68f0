"""What the aliases serve for each segment type, as Prometheus gauges on the API's `/metrics`.

The ingestion's figures reach Prometheus this way, not from the ingestion itself: runs start from
the CLI, a schedule, the Dagster UI or EMR, short-lived, with no Pushgateway to push to, while what
users see is what the aliases point at, and the cluster records that in each index's `_meta`
(`resources/publishing/index_writer.py`: calculated_at, published_at, generation, memberships). Each API
process reads it every `REFRESH_SECONDS` in the background; the timestamps let Prometheus compute
ages (`time() - ...`) that never go stale between refreshes. Per-run figures (documents, bytes,
retries, load seconds, failed chunks) are the index asset's Dagster metadata.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import structlog
from elasticsearch import AsyncElasticsearch
from prometheus_client import Counter, Gauge

from resources.names import type_alias

REFRESH_SECONDS = 15.0
READ_TIMEOUT_SECONDS = 2.0

# Every worker reads the same cluster; the most recent reading wins across workers.
SERVED_CALCULATED_AT = Gauge(
    "segmentation_served_calculated_timestamp_seconds",
    "When the served calculation of a segment type was computed (Unix time); its age is the data's staleness.",
    ["segment_type"],
    multiprocess_mode="livemostrecent",
)
SERVED_PUBLISHED_AT = Gauge(
    "segmentation_served_published_timestamp_seconds",
    "When the alias of a segment type last moved to the index it serves (Unix time).",
    ["segment_type"],
    multiprocess_mode="livemostrecent",
)
SERVED_GENERATION = Gauge(
    "segmentation_served_generation",
    "The alias generation the served index of a segment type was published under.",
    ["segment_type"],
    multiprocess_mode="livemostrecent",
)
SERVED_MEMBERSHIPS = Gauge(
    "segmentation_served_memberships",
    "Memberships (segment, customer) in the served index of a segment type.",
    ["segment_type"],
    multiprocess_mode="livemostrecent",
)
TYPE_INDICES = Gauge(
    "segmentation_type_indices",
    "Indices of a segment type in the cluster: served, retained for rollback, and unverified leftovers.",
    ["segment_type", "verified"],
    multiprocess_mode="livemostrecent",
)
REFRESHED_AT = Gauge(
    "segmentation_served_state_refreshed_timestamp_seconds",
    "When this API process last read the served state from Elasticsearch (Unix time).",
    multiprocess_mode="livemax",
)
PARTITION_PERIOD = Gauge(
    "segmentation_partition_period_seconds",
    "How long a partition's window is (86400 daily, 3600 hourly): how often each type's calculation "
    "is renewed, so that the staleness alert follows the granularity.",
    multiprocess_mode="livemax",
)
REFRESH_FAILURES = Counter(
    "segmentation_served_state_refresh_failures_total",
    "Readings of the served state from Elasticsearch that failed; the gauges keep their last values.",
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ServedCalculation:
    segment_type: str
    index: str
    calculated_at: float | None
    published_at: float | None
    generation: int | None
    memberships: int | None


@dataclass(frozen=True)
class ServedState:
    served: dict[str, ServedCalculation]  # segment_type -> what its alias points at
    indices: dict[tuple[str, bool], int]  # (segment_type, verified) -> how many


def _timestamp(value: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(value)).timestamp() if value else None
    except ValueError:
        return None


def _number(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) else None


def served_state_of(found: dict[str, Any], prefix: str) -> ServedState:
    """The served state from a `GET <prefix>-*` answer (index name -> aliases, mappings)."""
    served: dict[str, ServedCalculation] = {}
    indices: dict[tuple[str, bool], int] = {}
    for name, body in found.items():
        meta = body.get("mappings", {}).get("_meta", {})
        segment_type = meta.get("segment_type")
        # Another deployment's prefix may start with ours (`segments` and `segments-eu`): keep only ours.
        if not segment_type or not name.startswith(f"{prefix}-{segment_type}-"):
            continue
        verified = bool(meta.get("verified"))
        indices[(segment_type, verified)] = indices.get((segment_type, verified), 0) + 1
        if type_alias(prefix, segment_type) in body.get("aliases", {}):
            served[segment_type] = ServedCalculation(
                segment_type=segment_type,
                index=name,
                calculated_at=_timestamp(meta.get("calculated_at")),
                published_at=_timestamp(meta.get("published_at")),
                generation=_number(meta.get("generation")),
                memberships=_number(meta.get("memberships")),
            )
    return ServedState(served, indices)


async def read_served_state(es: AsyncElasticsearch, prefix: str) -> ServedState:
    found = await es.options(request_timeout=READ_TIMEOUT_SECONDS, max_retries=0).indices.get(
        index=f"{prefix}-*", allow_no_indices=True, filter_path="*.aliases,*.mappings._meta"
    )
    return served_state_of(dict(found), prefix)


def record(state: ServedState) -> None:
    for segment_type, calculation in state.served.items():
        for gauge, value in (
            (SERVED_CALCULATED_AT, calculation.calculated_at),
            (SERVED_PUBLISHED_AT, calculation.published_at),
            (SERVED_GENERATION, calculation.generation),
            (SERVED_MEMBERSHIPS, calculation.memberships),
        ):
            if value is not None:
                gauge.labels(segment_type).set(value)
    for segment_type in {t for t, _ in state.indices} | set(state.served):
        for verified in (True, False):
            TYPE_INDICES.labels(segment_type, str(verified).lower()).set(state.indices.get((segment_type, verified), 0))


class Reconciler(Protocol):
    """Told what Elasticsearch serves at each reading, with what it read itself just before."""

    async def served_record(self) -> dict[str, str] | None: ...

    async def reconcile_served(self, recorded: dict[str, str] | None, served: dict[str, str]) -> int: ...


async def refresh_served_state(
    es: AsyncElasticsearch, prefix: str, *, reconciler: Reconciler | None = None, failing: bool = False
) -> bool:
    """One reading: the gauges, and the `reconciler` told each type's served index. Answers whether
    it failed (`failing`: whether the last one did, so that an outage is logged once, not at every
    reading)."""
    try:
        recorded = await reconciler.served_record() if reconciler is not None else None  # before Elasticsearch's
        state = await read_served_state(es, prefix)
        record(state)
        if reconciler is not None:
            await reconciler.reconcile_served(recorded, {t: served.index for t, served in state.served.items()})
        REFRESHED_AT.set_to_current_time()
        if failing:
            log.info("served state readable again")
        return False
    except Exception as error:  # noqa: BLE001 - any failure: keep the last values, count it, retry
        REFRESH_FAILURES.inc()
        if not failing:
            log.warning("cannot read the served state from Elasticsearch", error=type(error).__name__)
        return True


async def keep_served_state(
    es: AsyncElasticsearch,
    prefix: str,
    *,
    every_seconds: float = REFRESH_SECONDS,
    reconciler: Reconciler | None = None,
    failing: bool = False,
) -> None:
    """Runs for the life of the API process (api/lifespan.py), after a first reading; Elasticsearch
    down only pauses it."""
    while True:
        await asyncio.sleep(every_seconds)
        failing = await refresh_served_state(es, prefix, reconciler=reconciler, failing=failing)
