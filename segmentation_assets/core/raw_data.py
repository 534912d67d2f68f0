"""The raw lake as Spark sees it for one evaluation time T, with rows that fail quality rules set aside.

Rows with an invalid id, a null key column or an order at an unknown store are counted
per reason, reported, and left out. Cancelled orders are valid rows; they just never count.
Orders without a valid status or time, or with an amount that is not finite (or is beyond
`MAX_ORDER_AMOUNT`), are left out and reported too: no segment could count them, and such an
amount would fail every sum it reached.
Order ids are the orders table's key and are not checked for repeats: that would shuffle every
order of every customer's lifetime on each run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from resources.lake.storage import Lake
from resources.names import ID_PATTERN
from resources.targeting import TARGETING_ATTRIBUTES
from segmentation_assets.core.time_windows import to_micros

# Java's `$` also matches before a final line break ("c1\n"); `\z` is the end of the input only.
SPARK_ID_PATTERN = ID_PATTERN.removesuffix("$") + r"\z"
ORDER_STATUSES = ("delivered", "cancelled")
TIMESTAMP_COLUMNS = ("signup_at", "created_at")
# EUR. Far beyond any order, and its cents still far from a 64-bit sum's limit.
MAX_ORDER_AMOUNT = 1e12

# Every targeting attribute but the store's own id is a column of the stores table, and an order
# carries its store's value as `store_<attribute>`: orders are narrowed by it.
STORE_ATTRIBUTES = tuple(a for a in TARGETING_ATTRIBUTES if a != "store_id")


@dataclass(frozen=True)
class QualityReport:
    rows_read: dict[str, int]  # table -> rows
    rejected: dict[str, int]  # "<table>.<reason>" -> rows left out

    @property
    def rejected_fraction(self) -> float:
        total = sum(self.rows_read.values())
        return sum(self.rejected.values()) / total if total else 0.0


def _as_timestamp(column: str, data_type: T.DataType) -> Column:
    """A timestamp column of the lake as a timestamp of the session's time zone (UTC, as the lake's are).

    Written without a time zone (pandas' naive datetimes), it reads as TIMESTAMP_NTZ: cast, each
    instant kept. Written in nanoseconds, it reads as nanoseconds since the epoch (a long, see
    `segmentation_assets.core.spark_session.JOB_SQL_SETTINGS`): floored to the microsecond, which keeps every instant on
    the same side of every window edge, since edges are whole microseconds."""
    if isinstance(data_type, T.TimestampNTZType):
        return F.col(column).cast("timestamp")
    if isinstance(data_type, T.LongType):
        return F.expr(f"timestamp_micros(({column} - pmod({column}, 1000)) div 1000)")
    return F.col(column)


def _first_failed_rule(rules: list[tuple[str, Column]]) -> Column:
    """The name of the first rule a row breaks, or null when it breaks none."""
    reason = F.lit(None).cast("string")
    for name, broken in reversed(rules):
        reason = F.when(broken, F.lit(name)).otherwise(reason)
    return reason


def _id_rules(column: str) -> list[tuple[str, Column]]:
    return [
        (f"null_{column}", F.col(column).isNull()),
        (f"invalid_{column}", ~F.col(column).rlike(SPARK_ID_PATTERN)),
    ]


def _keep_first_of_each_id(checked: DataFrame, id_column: str, order_by: list[str]) -> DataFrame:
    """A repeated id would count a customer twice, or give a store two sets of attributes: only
    its first valid row is kept."""
    first_valid = Window.partitionBy(id_column).orderBy(
        F.col("reject_reason").isNotNull(), *[F.col(c).asc_nulls_last() for c in order_by]
    )
    return checked.withColumn(
        "reject_reason",
        F.when(
            F.col("reject_reason").isNull() & (F.row_number().over(first_valid) > 1), F.lit(f"duplicate_{id_column}")
        ).otherwise(F.col("reject_reason")),
    )


@dataclass
class RawData:
    spark: SparkSession
    lake: Lake
    as_of: datetime  # T: the end of the partition's window, exclusive

    @property
    def as_of_micros(self) -> int:
        return to_micros(self.as_of)

    def _read(self, table: str) -> DataFrame:
        frame = self.spark.read.parquet(Lake.for_spark(self.lake.raw_table(table)))
        return frame.withColumns(
            {f.name: _as_timestamp(f.name, f.dataType) for f in frame.schema.fields if f.name in TIMESTAMP_COLUMNS}
        )

    @cached_property
    def _customers_checked(self) -> DataFrame:
        rules = [*_id_rules("customer_id"), ("null_signup_at", F.col("signup_at").isNull())]
        checked = self._read("customers").withColumn("reject_reason", _first_failed_rule(rules))
        return _keep_first_of_each_id(checked, "customer_id", ["signup_at", "country", "city"])

    @cached_property
    def _stores_checked(self) -> DataFrame:
        checked = self._read("stores").withColumn("reject_reason", _first_failed_rule(_id_rules("store_id")))
        return _keep_first_of_each_id(checked, "store_id", [*STORE_ATTRIBUTES, "name"])

    @cached_property
    def _orders_checked(self) -> DataFrame:
        last_date = (self.as_of - timedelta(microseconds=1)).date()
        orders = (
            self._read("orders")
            .where(F.col("order_date") <= F.lit(last_date))  # prunes partitions after T
            .where(F.col("created_at").isNull() | (F.col("created_at") < F.lit(self.as_of)))  # nulls are reported
        )
        # Narrowing parameters filter on the store's attributes, so every order carries them.
        known_stores = self.stores().select(
            "store_id",
            *(F.col(attribute).alias(f"store_{attribute}") for attribute in STORE_ATTRIBUTES),
            F.lit(True).alias("store_known"),
        )
        rules = [
            *_id_rules("order_id"),
            *_id_rules("customer_id"),
            *_id_rules("store_id"),
            ("null_created_at", F.col("created_at").isNull()),
            ("null_status", F.col("status").isNull()),
            ("invalid_status", ~F.col("status").isin(*ORDER_STATUSES)),
            ("null_amount", F.col("amount").isNull()),
            # NaN and infinities too: Spark orders NaN above every number.
            ("invalid_amount", ~(F.abs(F.col("amount")) < F.lit(MAX_ORDER_AMOUNT))),
            ("unknown_store", F.col("store_known").isNull()),
        ]
        return (
            orders.join(F.broadcast(known_stores), "store_id", "left")
            .withColumn("reject_reason", _first_failed_rule(rules))
            .drop("store_known")
        )

    def customers(self) -> DataFrame:
        return self._customers_checked.where(F.col("reject_reason").isNull()).drop("reject_reason")

    def stores(self) -> DataFrame:
        return self._stores_checked.where(F.col("reject_reason").isNull()).drop("reject_reason")

    def counted_orders(self) -> DataFrame:
        """Valid, delivered orders created before T: the only orders any segment counts."""
        return self._orders_checked.where(
            F.col("reject_reason").isNull() & (F.col("status") == "delivered")
        ).drop("reject_reason")

    def quality_report(self) -> QualityReport:
        """Rows read and rows left out per reason, over the rows this evaluation reads."""
        rows_read: dict[str, int] = {}
        rejected: dict[str, int] = {}
        for table, checked in (
            ("customers", self._customers_checked),
            ("stores", self._stores_checked),
            ("orders", self._orders_checked),
        ):
            rows_read[table] = 0
            for row in checked.groupBy("reject_reason").count().collect():
                rows_read[table] += row["count"]
                if row["reject_reason"] is not None:
                    rejected[f"{table}.{row['reject_reason']}"] = row["count"]
        return QualityReport(rows_read, dict(sorted(rejected.items())))
