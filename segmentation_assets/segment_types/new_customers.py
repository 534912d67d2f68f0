"""new_customers: signed up in the last N days, with at most M delivered orders before T."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from segmentation_assets.segment_types.base import Attribute, CountryCode, SegmentParams, SegmentType

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from segmentation_assets.raw_data import RawData


class NewCustomersParams(SegmentParams):
    max_days_since_signup: int = Field(ge=1, le=365, description="Signed up in [T - N days, T).")
    max_orders: int = Field(default=0, ge=0, le=1000, description="At most this many delivered orders before T.")
    city: Attribute | None = Field(default=None, description="The customer's own city.")
    country: CountryCode | None = Field(default=None, description="The customer's own country.")


def new_customers_members(raw: RawData, configs: DataFrame) -> DataFrame:
    from pyspark.sql import functions as F

    from segmentation_assets.spark_windows import micros_before_as_of, DAY_MICROS

    longest_window_days = configs.agg(F.max("max_days_since_signup")).first()[0] or 0
    recent_customers = (
        raw.customers()
        .withColumn("signup_us", F.unix_micros("signup_at"))
        .where(
            (F.col("signup_us") < F.lit(raw.as_of_micros))
            & (F.col("signup_us") >= F.lit(micros_before_as_of(raw.as_of_micros, longest_window_days)))
        )
    )
    delivered_before_as_of = raw.counted_orders().groupBy("customer_id").agg(F.count("*").alias("orders_before"))
    candidates = recent_customers.join(delivered_before_as_of, "customer_id", "left").fillna(0, ["orders_before"])

    # Configs are few (at most thousands): broadcast them and evaluate every config in one pass.
    c = candidates.alias("c")
    s = F.broadcast(configs).alias("s")
    matches = c.join(
        s,
        (F.col("c.signup_us") >= F.lit(raw.as_of_micros) - F.col("s.max_days_since_signup") * F.lit(DAY_MICROS))
        & (F.col("c.orders_before") <= F.col("s.max_orders"))
        & (F.col("s.city").isNull() | (F.col("s.city") == F.col("c.city")))
        & (F.col("s.country").isNull() | (F.col("s.country") == F.col("c.country"))),
    )
    return matches.select(F.col("s.segment_id").alias("segment_id"), F.col("c.customer_id").alias("customer_id"))


NEW_CUSTOMERS = SegmentType(
    name="new_customers",
    description="Customers who signed up in the last N days and have at most M delivered orders.",
    params_model=NewCustomersParams,
    members=new_customers_members,
)
