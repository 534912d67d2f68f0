"""Every segment type, many parameter sets and every narrowing parameter, on a generated lake:
the one-pass Spark job must agree exactly with the plain-Python reference (tests/reference.py)."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from devtools.synthetic_lake import generate_lake
from tests.reference import ReferenceLake
from tests.spark.helpers import run_job

END = date(2026, 11, 25)
T = datetime(2026, 11, 26, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("generated")
    generate_lake(str(root), customers=3_000, days=120, seed=7, end=END, dirty_fraction=0.002)
    return root


@pytest.fixture(scope="module")
def reference(lake: Path) -> ReferenceLake:
    return ReferenceLake(lake)


@pytest.fixture(scope="module")
def store(lake: Path) -> dict[str, Any]:
    """A real store of the lake, to narrow on its id, category, city and country."""
    stores = pq.read_table(lake / "raw" / "stores").to_pylist()
    return max(stores, key=lambda s: (s["city"] == "Madrid", s["category"] == "pharmacy", s["store_id"]))


def _narrowings(store: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {},
        {"store_id": store["store_id"]},
        {"category": store["category"]},
        {"city": store["city"]},
        {"country": store["country"]},
        {"category": store["category"], "city": store["city"]},
        {"store_id": store["store_id"], "country": "PT"},  # contradictory: nobody
    ]


def _check(lake: Path, reference: ReferenceLake, segment_type: str, configs: dict[str, dict[str, Any]]) -> None:
    _, members = run_job(lake, segment_type, "2026-11-25", T, configs)
    nonempty = 0
    for segment_id, params in configs.items():
        expected = reference.members(segment_type, T, params)
        assert members[segment_id] == expected, (segment_id, params)
        nonempty += bool(expected)
    assert nonempty >= len(configs) // 2, "the parameter sets should mostly select someone"


def test_frequent_buyers(lake: Path, reference: ReferenceLake, store: dict[str, Any]) -> None:
    configs = {
        f"fb{i}-{j}": {"min_orders": n, "lookback_days": d, **narrowing}
        for i, narrowing in enumerate(_narrowings(store))
        for j, (n, d) in enumerate([(1, 7), (2, 30), (3, 30), (5, 90), (1, 1), (8, 120)])
    }
    _check(lake, reference, "frequent_buyers", configs)


def test_high_spenders(lake: Path, reference: ReferenceLake, store: dict[str, Any]) -> None:
    configs = {
        f"hs{i}-{j}": {"min_total_amount": amount, "lookback_days": d, **narrowing}
        for i, narrowing in enumerate(_narrowings(store))
        for j, (amount, d) in enumerate([(20, 7), (50.5, 30), (100, 30), (250, 90), (0.01, 2)])
    }
    _check(lake, reference, "high_spenders", configs)


def test_lapsed_customers(lake: Path, reference: ReferenceLake, store: dict[str, Any]) -> None:
    configs = {
        f"lc{i}-{j}": {"inactive_days": d, "min_lifetime_orders": n, **narrowing}
        for i, narrowing in enumerate(_narrowings(store))
        for j, (d, n) in enumerate([(7, 1), (14, 2), (30, 3), (60, 1), (1, 5)])
    }
    _check(lake, reference, "lapsed_customers", configs)


def test_new_customers(lake: Path, reference: ReferenceLake, store: dict[str, Any]) -> None:
    customer_narrowings = [{}, {"city": store["city"]}, {"country": store["country"]}, {"city": "Porto", "country": "PT"}]
    configs = {
        f"nc{i}-{j}": {"max_days_since_signup": d, "max_orders": n, **narrowing}
        for i, narrowing in enumerate(customer_narrowings)
        for j, (d, n) in enumerate([(7, 0), (30, 0), (30, 2), (90, 5), (365, 1000), (1, 0)])
    }
    _check(lake, reference, "new_customers", configs)
