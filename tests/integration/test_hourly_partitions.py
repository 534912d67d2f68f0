"""Hourly partitions end to end ("hourly partitions `YYYY-MM-DD-HH:00` work the same
way"): T is the end of the hour, and the calculation, its index and its alias follow the key."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from cli.runs import materialize_partition
from resources.config_store.database import session_factory
from resources.config_store.segments import SegmentRepository
from resources.lake.manifest import read_manifest
from resources.lake.storage import Lake
from resources.settings import Settings
from tests.integration.publishing import lookup, writer
from tests.lake_builder import write_lake
from tests.reference import ReferenceLake

pytestmark = pytest.mark.integration

TYPE = "frequent_buyers"
PARTITION = "2026-11-25-13:00"
T = datetime(2026, 11, 25, 14, tzinfo=timezone.utc)  # the end of the partition's hour
US = timedelta(microseconds=1)
DAY = timedelta(days=1)
PARAMS = {"min_orders": 2, "lookback_days": 1}
ORDERS = [
    # two orders in [T - 1 day, T) make a member
    ("o1", "c_edges_in", "s1", T - DAY, 10.0, "delivered"),
    ("o2", "c_edges_in", "s1", T - US, 10.0, "delivered"),
    ("o3", "c_second_at_t", "s1", T - US, 10.0, "delivered"),
    ("o4", "c_second_at_t", "s1", T, 10.0, "delivered"),  # the next hour's
    ("o5", "c_first_too_old", "s1", T - DAY - US, 10.0, "delivered"),
    ("o6", "c_first_too_old", "s1", T - US, 10.0, "delivered"),
    ("o7", "c_within_the_hour", "s1", T - 59 * 60 * 1_000_000 * US, 10.0, "delivered"),
    ("o8", "c_within_the_hour", "s1", T - 2 * US, 10.0, "delivered"),
]


@pytest.fixture
def hourly(make_namespace: Callable[[], Settings]) -> Settings:
    return make_namespace().model_copy(update={"partition_granularity": "hourly"})


def test_an_hourly_partition_is_evaluated_at_the_end_of_its_hour_and_served(hourly: Settings) -> None:
    customers = sorted({o[1] for o in ORDERS})
    write_lake(
        Path(hourly.lake_uri),
        customers=[(c, T - 10 * DAY, "ES", "Madrid") for c in customers],
        stores=[("s1", "Farmacia Sol", "pharmacy", "Madrid", "ES")],
        orders=ORDERS,
    )
    segment = SegmentRepository(session_factory(hourly.database_url)).create(
        name="twice in a day", segment_type=TYPE, params=PARAMS, targeting={}, labels={}, description=None,
        status="active", actor="test",
    )

    outcome = materialize_partition(hourly, PARTITION, [TYPE])

    assert outcome.success, "\n".join(outcome.summary_lines)
    expected = ReferenceLake(Path(hourly.lake_uri)).members(TYPE, T, PARAMS)
    assert expected == {"c_edges_in", "c_within_the_hour"}  # the edges, written out
    [index] = writer(hourly).served_indices(TYPE)
    assert f"-{TYPE}-2026-11-25-1300-" in index
    answered = lookup(Elasticsearch(hourly.elasticsearch_url), hourly, customers)
    assert {customer for customer, segment_id, _ in answered if segment_id == segment.id} == expected
    lake = Lake(hourly.lake_uri)
    results = lake.results_dir(TYPE, PARTITION)
    assert results.endswith(f"segments/{TYPE}/2026-11-25-13_00")  # Hadoop paths hold no `:` (README)
    manifest = read_manifest(lake, results)
    assert manifest.partition_key == PARTITION
    assert datetime.fromisoformat(manifest.as_of) == T
