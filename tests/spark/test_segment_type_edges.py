"""Each segment type on a hand-made lake whose rows sit on the window edges, with expected
members written out by hand. T = 2026-11-26T00:00Z, the end of partition 2026-11-25."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.lake_builder import write_lake
from tests.spark.helpers import run_job

T = datetime(2026, 11, 26, tzinfo=timezone.utc)
PARTITION = "2026-11-25"
US = timedelta(microseconds=1)
DAY = timedelta(days=1)
OLD = T - 500 * DAY

STORES = [
    ("s1", "Farmacia Sol", "pharmacy", "Madrid", "ES"),
    ("s2", "Super Norte", "grocery", "Barcelona", "ES"),
    ("s3", "Farmacia Tejo", "pharmacy", "Lisboa", "PT"),
    ("s2", "Zeta", "pharmacy", "Madrid", "ES"),  # a repeated id: its first row (by category) is kept
    ("s4", "Kiosco", "kiosk", "Porto", "PT"),  # only the cent-threshold rows below
    ("s 5", "Bad Id", "grocery", "Madrid", "ES"),
    (None, "No Id", "grocery", "Madrid", "ES"),
]


def _orders(customer: str, *orders: tuple[str, datetime, float, str]) -> list[tuple]:
    return [(f"o-{customer}-{i}", customer, store, at, amount, status) for i, (store, at, amount, status) in enumerate(orders)]


def edge_rows() -> tuple[list[tuple], list[tuple]]:
    """(customers, orders) of the lake: rows on each type's window edges, and rows that break quality rules."""
    orders = [
        # frequent_buyers, 7 days, at least 2
        *_orders("f_edge_in", ("s1", T - 7 * DAY, 10.0, "delivered"), ("s1", T - US, 10.0, "delivered")),
        *_orders("f_edge_out", ("s1", T - 7 * DAY - US, 10.0, "delivered"), ("s1", T - DAY, 10.0, "delivered")),
        *_orders("f_at_t", ("s1", T - DAY, 10.0, "delivered"), ("s1", T, 10.0, "delivered")),
        *_orders("f_cancelled", ("s1", T - DAY, 10.0, "delivered"), ("s1", T - 2 * DAY, 10.0, "cancelled")),
        *_orders("f_unknown_store", ("s1", T - DAY, 10.0, "delivered"), ("s_missing", T - 2 * DAY, 10.0, "delivered")),
        *_orders("f_three", *[("s2", T - d * DAY, 10.0, "delivered") for d in (1, 2, 3)]),
        # high_spenders, 30 days, at least 50 EUR
        *_orders("h_exact", ("s1", T - 3 * DAY, 20.0, "delivered"), ("s1", T - 30 * DAY, 30.0, "delivered")),
        *_orders("h_below", ("s1", T - 3 * DAY, 20.0, "delivered"), ("s1", T - 4 * DAY, 29.99, "delivered")),
        *_orders("h_old", ("s1", T - 30 * DAY - US, 100.0, "delivered")),
        *_orders("h_cancelled", ("s1", T - 2 * DAY, 100.0, "cancelled")),
        *_orders("h_lisboa", ("s3", T - 2 * DAY, 60.0, "delivered")),
        # high_spenders on thresholds whose double times 100 overshoots the cents (1.1 * 100 = 110.00000000000001)
        *_orders("h_cents_in", ("s4", T - 2 * DAY, 1.10, "delivered")),
        *_orders("h_cents_sum", ("s4", T - 2 * DAY, 0.55, "delivered"), ("s4", T - 10 * DAY, 0.55, "delivered")),
        *_orders("h_cents_out", ("s4", T - 2 * DAY, 1.09, "delivered")),
        *_orders("h_twenty", ("s4", T - 2 * DAY, 20.10, "delivered")),
        # lapsed_customers, 30 days inactive, at least 2 lifetime
        *_orders("l_lapsed", ("s1", T - 31 * DAY, 10.0, "delivered"), ("s1", T - 40 * DAY, 10.0, "delivered")),
        *_orders("l_edge_recent", ("s1", T - 30 * DAY, 10.0, "delivered"), ("s1", T - 40 * DAY, 10.0, "delivered")),
        *_orders("l_edge_out", ("s1", T - 30 * DAY - US, 10.0, "delivered"), ("s1", T - 40 * DAY, 10.0, "delivered")),
        *_orders("l_one", ("s1", T - 40 * DAY, 10.0, "delivered")),
        *_orders("l_order_at_t", ("s1", T - 40 * DAY, 10.0, "delivered"), ("s1", T - 50 * DAY, 10.0, "delivered"), ("s1", T, 10.0, "delivered")),
        *_orders("l_cancelled_recent", ("s1", T - 40 * DAY, 10.0, "delivered"), ("s1", T - 50 * DAY, 10.0, "delivered"), ("s1", T - DAY, 10.0, "cancelled")),
        *_orders("l_mixed", ("s2", T - 40 * DAY, 10.0, "delivered"), ("s2", T - 50 * DAY, 10.0, "delivered"), ("s1", T - DAY, 10.0, "delivered")),
        # rows that break quality rules: never counted
        ("o-bad-customer", "bad id", "s1", T - DAY, 10.0, "delivered"),
        ("o-null-customer", None, "s1", T - DAY, 10.0, "delivered"),
        # Each of these customers has one valid order; counting its bad one would make it one of
        # frequent_buyers' "any" (2 in 7 days). A NaN amount would fail every high_spenders sum.
        *_orders("q_newline", ("s1", T - DAY, 10.0, "delivered")),
        ("o-newline-customer", "q_newline\n", "s1", T - DAY, 10.0, "delivered"),  # Java's `$` matches before it
        ("o-newline-order\n", "q_newline", "s1", T - DAY, 10.0, "delivered"),
        *_orders("q_untimed", ("s1", T - DAY, 10.0, "delivered")),
        ("o-untimed", "q_untimed", "s1", None, 10.0, "delivered", T - DAY),
        *_orders("q_nan", ("s1", T - DAY, 10.0, "delivered"), ("s1", T - DAY, float("nan"), "delivered")),
        *_orders("q_inf", ("s1", T - DAY, 10.0, "delivered"), ("s1", T - DAY, float("inf"), "delivered")),
        *_orders("q_huge", ("s1", T - DAY, 10.0, "delivered"), ("s1", T - DAY, 1e18, "delivered")),
        *_orders("q_no_status", ("s1", T - DAY, 10.0, "delivered"), ("s1", T - DAY, 10.0, None)),
        *_orders("q_returned", ("s1", T - DAY, 10.0, "delivered"), ("s1", T - DAY, 10.0, "returned")),
        *_orders("q_no_amount", ("s1", T - DAY, 10.0, "delivered"), ("s1", T - DAY, None, "delivered")),
        *_orders("q_bad_store", ("s1", T - DAY, 10.0, "delivered"), ("s 1", T - DAY, 10.0, "delivered")),
        ("o-null-store", "q_bad_store", None, T - DAY, 10.0, "delivered"),
        ("bad order id", "q_bad_store", "s1", T - DAY, 10.0, "delivered"),
    ]
    customer_ids = sorted({o[1] for o in orders if o[1] not in (None, "bad id", "q_newline\n")})
    customers = [(c, OLD, "ES", "Madrid") for c in customer_ids]
    customers.append(("f_three", OLD + DAY, "PT", "Lisboa"))  # a repeated id: the earliest signup is kept
    customers.append(("c_newline\n", T - DAY, "ES", "Madrid"))  # an invalid id, though Java's `$` matches before the break
    customers.append(("c_unsigned", None, "ES", "Madrid"))
    customers.append((None, T - DAY, "ES", "Madrid"))
    return customers, orders


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    customers, orders = edge_rows()
    root = tmp_path_factory.mktemp("edges")
    write_lake(root, customers=customers, stores=STORES, orders=orders)
    return root


def test_frequent_buyers_edges(lake: Path) -> None:
    _, members = run_job(lake, "frequent_buyers", PARTITION, T, {
        "any": {"min_orders": 2, "lookback_days": 7},
        "pharmacy": {"min_orders": 2, "lookback_days": 7, "category": "pharmacy"},
        "three": {"min_orders": 3, "lookback_days": 3},
        "nobody": {"min_orders": 10_000, "lookback_days": 730},
    })
    # h_below's two orders (T-3d, T-4d) also fall in the 7-day window.
    assert members["any"] == {"f_edge_in", "f_three", "h_below"}
    assert members["pharmacy"] == {"f_edge_in", "h_below"}
    assert members["three"] == {"f_three"}
    assert members["nobody"] == set()


def test_high_spenders_edges(lake: Path) -> None:
    _, members = run_job(lake, "high_spenders", PARTITION, T, {
        "fifty": {"min_total_amount": 50, "lookback_days": 30},
        "lisboa": {"min_total_amount": 50, "lookback_days": 30, "city": "Lisboa"},
        "pt_pharmacy": {"min_total_amount": 59.99, "lookback_days": 2, "country": "PT", "category": "pharmacy"},
        "one_ten": {"min_total_amount": 1.1, "lookback_days": 30, "category": "kiosk"},
        "twenty_point_one": {"min_total_amount": 20.1, "lookback_days": 30, "category": "kiosk"},
        "one_ten_and_a_half_cent": {"min_total_amount": 1.105, "lookback_days": 30, "category": "kiosk"},
        "a_hair_over_one_ten": {"min_total_amount": 1.100000001, "lookback_days": 30, "category": "kiosk"},
    })
    assert members["fifty"] == {"h_exact", "h_lisboa"}
    assert members["lisboa"] == {"h_lisboa"}
    assert members["pt_pharmacy"] == {"h_lisboa"}
    assert members["one_ten"] == {"h_cents_in", "h_cents_sum", "h_twenty"}
    assert members["twenty_point_one"] == {"h_twenty"}
    assert members["one_ten_and_a_half_cent"] == {"h_twenty"}
    assert members["a_hair_over_one_ten"] == {"h_twenty"}


def test_lapsed_customers_edges(lake: Path) -> None:
    _, members = run_job(lake, "lapsed_customers", PARTITION, T, {
        "lapsed": {"inactive_days": 30, "min_lifetime_orders": 2},
        "lapsed_at_s2": {"inactive_days": 30, "min_lifetime_orders": 2, "store_id": "s2"},
    })
    assert members["lapsed"] == {"l_lapsed", "l_edge_out", "l_order_at_t", "l_cancelled_recent"}
    assert members["lapsed_at_s2"] == {"l_mixed"}


def test_quality_report_counts_each_reason(lake: Path) -> None:
    result, _ = run_job(lake, "frequent_buyers", PARTITION, T, {"any": {"min_orders": 1, "lookback_days": 1}})
    # Orders at T fall outside the evaluation (created_at < T): not read, not rejected.
    assert result.quality.rejected == {
        "customers.duplicate_customer_id": 1,
        "customers.invalid_customer_id": 1,
        "customers.null_customer_id": 1,
        "customers.null_signup_at": 1,
        "orders.invalid_amount": 3,
        "orders.invalid_customer_id": 2,
        "orders.invalid_order_id": 2,
        "orders.invalid_status": 1,
        "orders.invalid_store_id": 1,
        "orders.null_amount": 1,
        "orders.null_created_at": 1,
        "orders.null_customer_id": 1,
        "orders.null_status": 1,
        "orders.null_store_id": 1,
        "orders.unknown_store": 1,
        "stores.duplicate_store_id": 1,
        "stores.invalid_store_id": 1,
        "stores.null_store_id": 1,
    }
    assert result.quality.rows_read["stores"] == len(STORES)


@pytest.mark.parametrize(
    "timestamp_type",
    # pandas writes naive datetimes (Spark: TIMESTAMP_NTZ, which the lake's layout says are UTC), in nanoseconds
    [pa.timestamp("us"), pa.timestamp("ns", tz="UTC"), pa.timestamp("ns")],
    ids=["naive", "nanoseconds", "naive-nanoseconds"],
)
def test_timestamps_without_a_time_zone_or_in_nanoseconds_are_read(lake: Path, tmp_path: Path, timestamp_type) -> None:
    customers, orders = edge_rows()
    write_lake(tmp_path, customers=customers, stores=STORES, orders=orders, timestamp_type=timestamp_type)
    extra = set()
    if timestamp_type.unit == "ns":
        # A nanosecond off each edge: floored to the microsecond, each stays on its side.
        extra = {"n_edge_in"}
        write_nanosecond_orders(tmp_path, timestamp_type, [
            ("n-1", "n_edge_in", T - 7 * DAY, 0), ("n-2", "n_edge_in", T, -1),
            ("n-3", "n_edge_out", T - 7 * DAY, -1), ("n-4", "n_edge_out", T, -1),
        ])
    params = {"any": {"min_orders": 2, "lookback_days": 7}}
    _, read = run_job(tmp_path, "frequent_buyers", PARTITION, T, params)
    _, aware = run_job(lake, "frequent_buyers", PARTITION, T, params)
    assert read["any"] == aware["any"] | extra and "f_edge_in" in read["any"]


def write_nanosecond_orders(root: Path, timestamp_type: pa.DataType, orders: list[tuple[str, str, datetime, int]]) -> None:
    """(order_id, customer_id, an instant, nanoseconds added to it): delivered orders at store s1."""
    for order_id, customer_id, at, nanos in orders:
        created_at = int(at.timestamp()) * 1_000_000_000 + nanos
        day = datetime.fromtimestamp(created_at // 1_000_000_000, timezone.utc).date().isoformat()
        folder = root / "raw" / "orders" / f"order_date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.table({
            "order_id": [order_id], "customer_id": [customer_id], "store_id": ["s1"],
            "created_at": pa.array([created_at], timestamp_type), "amount": [10.0], "status": ["delivered"],
        })
        pq.write_table(table, folder / f"part-{order_id}.parquet")


def test_zero_member_segments_are_in_the_manifest(lake: Path) -> None:
    result, members = run_job(lake, "frequent_buyers", PARTITION, T, {
        "nobody": {"min_orders": 10_000, "lookback_days": 1},
        "someone": {"min_orders": 1, "lookback_days": 1},
    })
    counts = result.member_counts
    assert counts["nobody"] == 0 and members["nobody"] == set()
    assert counts["someone"] == len(members["someone"]) > 0


def test_entered_and_exited_since_the_previous_partition(lake: Path) -> None:
    # f_edge_in's order at T-7d leaves the 7-day window when T moves a day later.
    params = {"any": {"min_orders": 2, "lookback_days": 7}}
    run_job(lake, "frequent_buyers", "2026-11-24", T - DAY, params)
    result, members = run_job(lake, "frequent_buyers", PARTITION, T, params, previous_partition="2026-11-24")
    _, before = run_job(lake, "frequent_buyers", "2026-11-24", T - DAY, params)
    entry = result.segments[0]
    assert entry.entered == len(members["any"] - before["any"])
    assert entry.exited == len(before["any"] - members["any"])
