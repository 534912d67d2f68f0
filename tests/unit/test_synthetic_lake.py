"""`devtools.synthetic_lake`: the raw lake as written by `segmentation lake generate`."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from devtools.synthetic_lake import (
    CUSTOMERS_SCHEMA,
    ORDERS_SCHEMA,
    STORES_SCHEMA,
    LakeSummary,
    generate_lake,
)

VALID_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")
END = date(2026, 11, 25)
DAYS = 10
CUSTOMERS = 500
TS = pa.timestamp("us", tz="UTC")


def _read(root: Path) -> tuple[pa.Table, pa.Table, pa.Table]:
    customers = pq.read_table(root / "raw" / "customers")
    stores = pq.read_table(root / "raw" / "stores")
    orders = ds.dataset(
        root / "raw" / "orders",
        format="parquet",
        partitioning=ds.partitioning(pa.schema([("order_date", pa.string())]), flavor="hive"),
    ).to_table()
    return customers, stores, orders.sort_by("order_id")


def _valid(values: list[str | None]) -> list[bool]:
    return [v is not None and VALID_ID.match(v) is not None for v in values]


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[Path, LakeSummary]:
    root = tmp_path_factory.mktemp("clean")
    summary = generate_lake(str(root), customers=CUSTOMERS, days=DAYS, seed=7, end=END, dirty_fraction=0.0)
    return root, summary


@pytest.fixture(scope="module")
def dirty(tmp_path_factory) -> tuple[Path, LakeSummary]:
    root = tmp_path_factory.mktemp("dirty")
    summary = generate_lake(str(root), customers=CUSTOMERS, days=DAYS, seed=7, end=END, dirty_fraction=0.03)
    return root, summary


def test_layout_schema_and_types(clean):
    root, summary = clean
    assert pq.read_schema(root / "raw" / "customers" / "part-00000.parquet").remove_metadata() == CUSTOMERS_SCHEMA
    assert pq.read_schema(root / "raw" / "stores" / "part-00000.parquet").remove_metadata() == STORES_SCHEMA
    files = sorted((root / "raw" / "orders").glob("order_date=*/*.parquet"))
    assert len(files) == DAYS
    for f in files:
        assert pq.read_schema(f).remove_metadata() == ORDERS_SCHEMA
    # Exactly the column names and types of the raw lake's layout.
    assert [(f.name, str(f.type)) for f in ORDERS_SCHEMA] == [
        ("order_id", "string"),
        ("customer_id", "string"),
        ("store_id", "string"),
        ("created_at", "timestamp[us, tz=UTC]"),
        ("amount", "double"),
        ("status", "string"),
    ]
    assert CUSTOMERS_SCHEMA.field("signup_at").type == TS

    customers, stores, orders = _read(root)
    assert summary.customers == customers.num_rows == CUSTOMERS
    assert summary.stores == stores.num_rows >= 20
    assert summary.orders == orders.num_rows > CUSTOMERS  # ~1.2 orders per customer in 10 days
    assert summary.days == DAYS and summary.end == END and summary.start == END - timedelta(days=DAYS - 1)
    assert set(orders["status"].to_pylist()) == {"delivered", "cancelled"}
    amounts = orders["amount"].to_numpy()
    assert (amounts > 0).all() and np.array_equal(amounts, np.round(amounts, 2))
    assert len(set(orders["order_id"].to_pylist())) == orders.num_rows
    assert len(set(customers["customer_id"].to_pylist())) == customers.num_rows
    assert len(set(stores["store_id"].to_pylist())) == stores.num_rows
    assert set(customers["country"].to_pylist()) <= {"ES", "PT", "IT", "FR", "DE", "NL"}
    assert len(set(customers["country"].to_pylist())) >= 3
    assert len(set(stores["category"].to_pylist())) >= 5
    assert all(stores["name"].to_pylist())


def test_partitions_match_created_at_dates(clean):
    root, _ = clean
    expected = [(END - timedelta(days=i)).isoformat() for i in range(DAYS)][::-1]
    folders = sorted(p.name for p in (root / "raw" / "orders").iterdir())
    assert folders == [f"order_date={d}" for d in expected]
    for d in expected:
        t = pq.read_table(root / "raw" / "orders" / f"order_date={d}")
        assert t.num_rows > 0
        assert set(pc.strftime(t["created_at"], format="%Y-%m-%d").to_pylist()) == {d}


def test_orders_never_before_signup_and_mostly_in_own_city(clean):
    root, _ = clean
    customers, stores, orders = _read(root)
    joined = orders.join(customers, "customer_id").join(
        stores.select(["store_id", "city"]).rename_columns(["store_id", "store_city"]), "store_id"
    )
    assert joined.num_rows == orders.num_rows  # clean: every order has a known customer and store
    assert pc.all(pc.greater_equal(joined["created_at"], joined["signup_at"])).as_py()
    own_city = pc.mean(pc.cast(pc.equal(joined["city"], joined["store_city"]), pa.float64())).as_py()
    assert own_city > 0.75


def test_plausible_shape(clean):
    root, _ = clean
    customers, _, orders = _read(root)
    cancelled = pc.mean(pc.cast(pc.equal(orders["status"], "cancelled"), pa.float64())).as_py()
    assert 0.02 < cancelled < 0.12
    t_end = datetime.combine(END + timedelta(days=1), datetime.min.time(), tzinfo=timezone.utc)
    signups = customers["signup_at"].to_pylist()
    assert all(s < t_end for s in signups)
    assert any(s >= t_end - timedelta(days=30) for s in signups)  # new customers exist
    assert any(s < t_end - timedelta(days=365) for s in signups)  # and a long history
    per_customer = orders.group_by("customer_id").aggregate([("order_id", "count")])["order_id_count"]
    assert pc.max(per_customer).as_py() >= 5 * np.median(per_customer.to_numpy())  # long tail


def test_deterministic(clean, tmp_path):
    root, summary = clean
    again = generate_lake(str(tmp_path), customers=CUSTOMERS, days=DAYS, seed=7, end=END, dirty_fraction=0.0)
    assert {k: v for k, v in vars(again).items() if k != "seconds"} == {
        k: v for k, v in vars(summary).items() if k != "seconds"
    }
    for a, b in zip(_read(root), _read(tmp_path)):
        assert a.equals(b)
    for f in sorted(root.rglob("*.parquet")):
        assert f.read_bytes() == (tmp_path / f.relative_to(root)).read_bytes(), f
    other = tmp_path / "other"
    generate_lake(str(other), customers=CUSTOMERS, days=DAYS, seed=8, end=END, dirty_fraction=0.0)
    assert not _read(root)[2].equals(_read(other)[2])


def test_clean_lake_has_no_dirty_rows(clean):
    root, summary = clean
    customers, stores, orders = _read(root)
    assert summary.invalid_rows == 0
    assert all(_valid(customers["customer_id"].to_pylist()))
    assert all(_valid(stores["store_id"].to_pylist()))
    assert all(_valid(orders["order_id"].to_pylist()))
    assert all(_valid(orders["customer_id"].to_pylist()))
    assert set(orders["store_id"].to_pylist()) <= set(stores["store_id"].to_pylist())


def test_dirty_rows_when_asked(dirty):
    root, summary = dirty
    customers, stores, orders = _read(root)
    bad_customers = customers.num_rows - sum(_valid(customers["customer_id"].to_pylist()))
    assert 3 <= bad_customers <= 10
    assert summary.customers == customers.num_rows == CUSTOMERS + bad_customers

    cust = orders["customer_id"].to_pylist()
    nulls = sum(c is None for c in cust)
    invalid = sum(c is not None and not VALID_ID.match(c) for c in cust)
    known_stores = set(stores["store_id"].to_pylist())
    unknown = [s for s in orders["store_id"].to_pylist() if s not in known_stores]
    assert nulls > 0 and invalid > 0 and unknown
    assert all(_valid(unknown))  # well-formed ids, just not in the stores table
    assert summary.invalid_rows == bad_customers + nulls + invalid + len(unknown)
    assert nulls + invalid + len(unknown) == pytest.approx(0.03 * orders.num_rows, abs=1)
    assert all(_valid(orders["order_id"].to_pylist()))


def test_regenerate_replaces_raw_only(tmp_path):
    generate_lake(str(tmp_path), customers=100, days=5, seed=1, end=END, dirty_fraction=0.0)
    (tmp_path / "segments").mkdir()
    (tmp_path / "segments" / "keep.txt").write_text("x")
    (tmp_path / "raw" / "stale.txt").write_text("x")
    summary = generate_lake(str(tmp_path), customers=100, days=2, seed=1, end="2026-11-20", dirty_fraction=0.0)
    assert summary.end == date(2026, 11, 20)
    assert sorted(p.name for p in (tmp_path / "raw" / "orders").iterdir()) == [
        "order_date=2026-11-19",
        "order_date=2026-11-20",
    ]
    assert not (tmp_path / "raw" / "stale.txt").exists()
    assert (tmp_path / "segments" / "keep.txt").read_text() == "x"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"customers": 0},
        {"days": 0},
        {"seed": -1},
        {"dirty_fraction": -0.1},
        {"dirty_fraction": 0.9},
    ],
)
def test_rejects_bad_arguments(tmp_path, kwargs):
    args = {"customers": 10, "days": 1, "seed": 1, "end": END} | kwargs
    with pytest.raises(ValueError):
        generate_lake(str(tmp_path), **args)
    assert not (tmp_path / "raw").exists()
