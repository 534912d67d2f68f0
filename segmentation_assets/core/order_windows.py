"""Counted orders per customer, per narrowing scope and per configured look-back window.

Shared by the types that count orders "in the last N days" (frequent_buyers, high_spenders).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from segmentation_assets.core.config_evaluation import (
    SCOPE_KEY,
    scoped,
    threshold_join,
    with_scope_key,
)
from segmentation_assets.core.raw_data import STORE_ATTRIBUTES, RawData
from segmentation_assets.core.time_windows import age_days

# Narrowing parameter -> the column of a counted order that it filters.
ORDER_NARROWING = {"store_id": "store_id", **{a: f"store_{a}" for a in STORE_ATTRIBUTES}}


def counted_orders(raw: RawData) -> DataFrame:
    """(customer_id, store attributes, age_days, amount_cents) of every counted order.

    Amounts are summed in cents (each order's amount rounded half-up to the cent), so that
    totals are exact integers, compared with a threshold in whole cents (high_spenders).
    """
    return raw.counted_orders().select(
        "customer_id",
        *ORDER_NARROWING.values(),
        age_days("created_at", raw.as_of_micros).alias("age_days"),
        F.round(F.col("amount") * 100).cast("long").alias("amount_cents"),
    )


def order_history(raw: RawData, configs: DataFrame) -> DataFrame:
    """(scope_key, customer_id, lifetime_orders, last_order_age_days) in every scope of `configs`.

    Orders are first collapsed per customer and store, so the fan-out to scopes handles one row
    per pair rather than one per order.
    """
    per_store = counted_orders(raw).groupBy("customer_id", *ORDER_NARROWING.values()).agg(
        F.count(F.lit(1)).alias("orders"), F.min("age_days").alias("age_days")
    )
    return (
        scoped(per_store, configs, ORDER_NARROWING)
        .groupBy(SCOPE_KEY, "customer_id")
        .agg(F.sum("orders").alias("lifetime_orders"), F.min("age_days").alias("last_order_age_days"))
    )


def totals_per_window(raw: RawData, configs: DataFrame) -> DataFrame:
    """(scope_key, lookback_days, customer_id, orders, amount_cents): each customer's counted orders
    in the last `lookback_days` days, for every look-back some config of that scope uses.

    Each order falls in the shortest configured window that holds it; running sums over those
    windows give every longer one. Orders are first collapsed per customer, store and shortest
    window of any config (which no config's window can split), so the fan-out to scopes handles
    far fewer rows. The cost follows the orders and the number of distinct windows, not the
    number of configs.
    """
    all_windows = sorted(r[0] for r in configs.select("lookback_days").distinct().collect())
    shortest_window = F.array_min(
        F.filter(F.array(*[F.lit(w) for w in all_windows]), lambda w: w >= F.col("age_days"))
    )
    collapsed = (
        counted_orders(raw)
        .withColumn("age_days", shortest_window)  # from here on: the bucket, not the exact age
        .where(F.col("age_days").isNotNull())
        .groupBy("customer_id", *ORDER_NARROWING.values(), "age_days")
        .agg(F.count(F.lit(1)).alias("orders"), F.sum("amount_cents").alias("amount_cents"))
    )
    windows = configs.groupBy(SCOPE_KEY).agg(F.sort_array(F.collect_set("lookback_days")).alias("windows"))
    in_window = (
        scoped(collapsed, configs, ORDER_NARROWING)
        .join(F.broadcast(windows), SCOPE_KEY)
        .withColumn("window", F.array_min(F.filter("windows", lambda w: w >= F.col("age_days"))))
        .where(F.col("window").isNotNull())
    )
    per_window = in_window.groupBy(SCOPE_KEY, "customer_id", "window").agg(
        F.sum("orders").alias("orders"), F.sum("amount_cents").alias("amount_cents")
    )
    by_customer = Window.partitionBy(SCOPE_KEY, "customer_id").orderBy("window")
    running = by_customer.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    cumulative = (
        per_window.withColumn("orders", F.sum("orders").over(running))
        .withColumn("amount_cents", F.sum("amount_cents").over(running))
        .withColumn("next_window", F.lead("window").over(by_customer))
    )
    # A customer's totals at one window hold for every configured window up to the next one with orders.
    covered = F.filter(
        "windows",
        lambda w: (w >= F.col("window")) & (F.col("next_window").isNull() | (w < F.col("next_window"))),
    )
    return (
        cumulative.join(F.broadcast(windows), SCOPE_KEY)
        .withColumn("lookback_days", F.explode(covered))
        .select(SCOPE_KEY, "lookback_days", "customer_id", "orders", "amount_cents")
    )


def members_reaching_window_total(raw: RawData, configs: DataFrame, *, total: str, threshold: Column) -> DataFrame:
    """(segment_id, customer_id) where the customer's `total` (orders or amount_cents) in the
    config's scope and look-back window reaches the config's `threshold`."""
    configs = with_scope_key(configs, list(ORDER_NARROWING))
    return threshold_join(
        totals_per_window(raw, configs),
        configs.select("segment_id", SCOPE_KEY, "lookback_days", threshold.alias("threshold")),
        group=[SCOPE_KEY, "lookback_days"],
        value=total,
        threshold="threshold",
        reached_when="value >= threshold",
    ).select("segment_id", "customer_id")
