"""What a segment is targeted by, and how a segment appears in a lookup answer.

`TargetingAttributes` is the one definition of the attributes lookups filter on, beside a segment's
type and labels. The lookup filters, their OpenAPI parameters, the batch body, the config store's
list filters, the index mapping, the catalog and the Spark job's store columns follow from its fields.
To add an attribute (it must be a column of the lake's stores table): a field here, a column in
`resources/config_store/models.py` with its migration, and the narrowing parameter in
`segmentation_assets/core/segment_types/base.py`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from resources.names import EntityId

CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
# One line of text: what a category or a city is called.
AttributeText = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]*$")]


class TargetingAttributes(BaseModel):
    """Null where the segment's parameters do not narrow on the attribute."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    store_id: EntityId | None = Field(default=None, description="The store whose orders count.")
    category: AttributeText | None = Field(default=None, description="The category of the stores whose orders count.")
    city: AttributeText | None = Field(default=None, description="The city (of the stores, or of new customers).")
    country: CountryCode | None = Field(default=None, description="The country, ISO 3166-1 alpha-2.")


TARGETING_ATTRIBUTES: tuple[str, ...] = tuple(TargetingAttributes.model_fields)


class SegmentAttributes(TargetingAttributes):
    """What readers see of a segment as of one calculation: carried from the config store through
    the calculation's manifest into the index."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class _SegmentHeading(BaseModel):
    segment_id: str
    name: str | None
    segment_type: str


# Bases listed in this order so the fields come out as the answer lists them: the heading, then
# the targeting attributes, then labels and time (pydantic orders fields from the last base up).
class SegmentAnswer(TargetingAttributes, _SegmentHeading):
    """A segment in a lookup answer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    labels: dict[str, str]
    calculated_at: datetime


SEGMENT_ANSWER_FIELDS: tuple[str, ...] = tuple(SegmentAnswer.model_fields)
