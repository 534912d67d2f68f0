"""high_spenders: counted orders in the last D days add up to at least an amount."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from segmentation_assets.core.segment_types.base import OrderNarrowing, SegmentType

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from segmentation_assets.core.raw_data import RawData


class HighSpendersParams(OrderNarrowing):
    min_total_amount: float = Field(gt=0, le=1e9, description="EUR; the sum of counted orders' amounts must reach it.")
    lookback_days: int = Field(ge=1, le=730, description="The window: the last N days before T.")


def high_spenders_members(raw: RawData, configs: DataFrame) -> DataFrame:
    from pyspark.sql import functions as F

    from segmentation_assets.core.order_windows import members_reaching_window_total

    # Totals are in whole cents (see order_windows.counted_orders); the threshold becomes the
    # fewest cents that reach it, at least one (it is > 0). Through a decimal, which Spark makes
    # from the double's shortest text: 1.1 * 100 in doubles is 110.00000000000001, and would turn
    # away a total of 110 cents. 18 places keep every digit of that text up to the 1e9 bound.
    threshold_cents = F.greatest(F.lit(1), F.ceil(F.col("min_total_amount").cast("decimal(28,18)") * 100))
    return members_reaching_window_total(raw, configs, total="amount_cents", threshold=threshold_cents)


HIGH_SPENDERS = SegmentType(
    name="high_spenders",
    description="Customers whose delivered orders in the last D days add up to at least an amount.",
    params_model=HighSpendersParams,
    members=high_spenders_members,
)
