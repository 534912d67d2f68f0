"""new_customers: signed up in the last N days, with at most M delivered orders before T."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from segmentation_assets.core.segment_types.base import (
    Attribute,
    CountryCode,
    SegmentParams,
    SegmentType,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from segmentation_assets.core.raw_data import RawData

# Here city and country are the customer's own, not the store's.
CUSTOMER_NARROWING = {"city": "customer_city", "country": "customer_country"}


class NewCustomersParams(SegmentParams):
    max_days_since_signup: int = Field(ge=1, le=365, description="Signed up in [T - N days, T).")
    max_orders: int = Field(default=0, ge=0, le=1000, description="At most this many delivered orders before T.")
    city: Attribute | None = Field(default=None, description="The customer's own city.")
    country: CountryCode | None = Field(default=None, description="The customer's own country.")


def new_customers_members(raw: RawData, configs: DataFrame) -> DataFrame:
    from pyspark.sql import functions as F

    from segmentation_assets.core.config_evaluation import (
        SCOPE_KEY,
        scoped,
        threshold_join,
        with_scope_key,
    )
    from segmentation_assets.core.time_windows import age_days

    configs = with_scope_key(configs, list(CUSTOMER_NARROWING))
    longest_window = configs.agg(F.max("max_days_since_signup")).first()[0] or 0
    # signup_age_days >= 1 is signup_at < T; <= N is signup_at >= T - N days.
    recent = (
        raw.customers()
        .select(
            "customer_id",
            F.col("city").alias("customer_city"),
            F.col("country").alias("customer_country"),
            age_days("signup_at", raw.as_of_micros).alias("signup_age_days"),
        )
        .where((F.col("signup_age_days") >= 1) & (F.col("signup_age_days") <= longest_window))
    )
    orders_before = raw.counted_orders().groupBy("customer_id").agg(F.count(F.lit(1)).alias("orders_before"))
    facts = recent.join(orders_before, "customer_id", "left").fillna(0, ["orders_before"])
    matched = threshold_join(
        scoped(facts, configs, CUSTOMER_NARROWING),
        configs.select("segment_id", SCOPE_KEY, "max_days_since_signup", "max_orders"),
        group=[SCOPE_KEY],
        value="signup_age_days",
        threshold="max_days_since_signup",
        reached_when="value <= threshold",
    )
    return matched.where(F.col("orders_before") <= F.col("max_orders")).select("segment_id", "customer_id")


NEW_CUSTOMERS = SegmentType(
    name="new_customers",
    description="Customers who signed up in the last N days and have at most M delivered orders.",
    params_model=NewCustomersParams,
    members=new_customers_members,
)
