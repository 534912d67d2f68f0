"""lapsed_customers: at least N counted orders before T, and none in the last D days."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from segmentation_assets.core.segment_types.base import OrderNarrowing, SegmentType

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from segmentation_assets.core.raw_data import RawData


class LapsedCustomersParams(OrderNarrowing):
    inactive_days: int = Field(ge=1, le=730, description="No counted order in the last N days before T.")
    min_lifetime_orders: int = Field(ge=1, le=10_000, description="At least this many counted orders before T.")


def lapsed_customers_members(raw: RawData, configs: DataFrame) -> DataFrame:
    from pyspark.sql import functions as F

    from segmentation_assets.core.config_evaluation import (
        SCOPE_KEY,
        threshold_join,
        with_scope_key,
    )
    from segmentation_assets.core.order_windows import ORDER_NARROWING, order_history

    configs = with_scope_key(configs, list(ORDER_NARROWING))
    matched = threshold_join(
        order_history(raw, configs),
        configs.select("segment_id", SCOPE_KEY, "min_lifetime_orders", "inactive_days"),
        group=[SCOPE_KEY],
        value="lifetime_orders",
        threshold="min_lifetime_orders",
        reached_when="value >= threshold",
    )
    # Their latest order is older than the window: none in it.
    return matched.where(F.col("last_order_age_days") > F.col("inactive_days")).select("segment_id", "customer_id")


LAPSED_CUSTOMERS = SegmentType(
    name="lapsed_customers",
    description="Customers with at least N delivered orders before T and none in the last D days.",
    params_model=LapsedCustomersParams,
    members=lapsed_customers_members,
)
