"""What every segment type has: a parameter model and a Spark computation over the raw lake."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from resources.names import EntityId
from resources.targeting import TARGETING_ATTRIBUTES

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from segmentation_assets.core.raw_data import RawData

Attribute = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]


class SegmentParams(BaseModel):
    """Base of every type's parameters: unknown parameters are an error, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def targeting(self) -> dict[str, str | None]:
        return {name: getattr(self, name, None) for name in TARGETING_ATTRIBUTES}


class OrderNarrowing(SegmentParams):
    """Restricts which orders count to orders at stores with all the given attributes."""

    store_id: EntityId | None = Field(default=None, description="Only orders at this store count.")
    category: Attribute | None = Field(default=None, description="Only orders at stores of this category count.")
    city: Attribute | None = Field(default=None, description="Only orders at stores in this city count.")
    country: CountryCode | None = Field(default=None, description="Only orders at stores in this country (ISO 3166-1 alpha-2) count.")


# Computes (segment_id, customer_id) for every config row of one type in one Spark job.
# `configs` has one row per active segment: `segment_id` plus one column per parameter.
MembersFunction = Callable[["RawData", "DataFrame"], "DataFrame"]


@dataclass(frozen=True)
class SegmentType:
    name: str
    description: str
    params_model: type[SegmentParams]
    members: MembersFunction

    def parse_params(self, params: dict[str, Any]) -> SegmentParams:
        return self.params_model.model_validate(params)

    def json_schema(self) -> dict[str, Any]:
        return self.params_model.model_json_schema()
