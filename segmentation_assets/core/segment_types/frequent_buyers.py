"""frequent_buyers: at least N counted orders in the last D days."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from segmentation_assets.core.segment_types.base import OrderNarrowing, SegmentType

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from segmentation_assets.core.raw_data import RawData


class FrequentBuyersParams(OrderNarrowing):
    min_orders: int = Field(ge=1, le=10_000, description="At least this many counted orders in the window.")
    lookback_days: int = Field(ge=1, le=730, description="The window: the last N days before T.")


def frequent_buyers_members(raw: RawData, configs: DataFrame) -> DataFrame:
    from pyspark.sql import functions as F

    from segmentation_assets.core.order_windows import members_reaching_window_total

    return members_reaching_window_total(raw, configs, total="orders", threshold=F.col("min_orders"))


FREQUENT_BUYERS = SegmentType(
    name="frequent_buyers",
    description="Customers with at least N delivered orders in the last D days.",
    params_model=FrequentBuyersParams,
    members=frequent_buyers_members,
)
