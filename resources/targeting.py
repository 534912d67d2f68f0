"""What a segment is targeted by, and how a segment appears in a lookup answer.

`TargetingAttributes` is the one definition of the attributes lookups filter on, beside a segment's
type and labels. The lookup filters, their OpenAPI parameters, the batch body, the config store's
list filters, the index mapping, the catalog and the Spark job's store columns follow from its fields.
To add an attribute (it must be a column of the lake's stores table): a field here, a column in
`resources/config_store/models.py` with its migration, and the narrowing parameter in
`segmentation_assets/core/segment_types/base.py`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from datetime import datetime
from functools import partial
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, create_model

from resources.names import EntityId

# Text people type for others to read (names, descriptions, labels, targeting values) shows what it
# holds: no bidirectional controls (text that reads otherwise than it sorts and compares), no
# zero-width or other format characters (two names that look alike but differ), no control
# characters or line separators (one line stays one line).
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def shown_as_written(value: str, keep: str = "") -> str:
    """`value`, or a ValueError naming its first hidden character (position counted from 0);
    `keep` lists the control characters a field allows."""
    for position, character in enumerate(value):
        if unicodedata.category(character) in _HIDDEN_CATEGORIES and character not in keep:
            raise ValueError(
                f"contains an invisible, bidirectional or control character (U+{ord(character):04X}) at position {position}"
            )
    return value


# Annotated metadata, placed after any StringConstraints so that stripped whitespace is not refused.
# On what clients write only: stored text may predate the rule, and reads never re-validate.
VisibleLine = AfterValidator(shown_as_written)
VisibleLines = AfterValidator(partial(shown_as_written, keep="\t\n\r"))  # line breaks and tabs are layout

# A filter value: one line of text, bounded; ids and countries in their own forms.
FilterText = Annotated[str, StringConstraints(max_length=128, pattern=r"^[^\x00-\x1f\x7f]*$")]
# The values a lookup may give for one repeatable filter (`segment_type`, `label`): a list has a
# bound on every route, or one request could make the process validate, and answer, without end.
MAX_FILTER_VALUES = 20
FilterValues = Annotated[list[FilterText], Field(max_length=MAX_FILTER_VALUES)]
FILTER_FORMS = {"store_id": EntityId, "country": Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]}


class TargetingAttributes(BaseModel):
    """A segment's attributes as stored and answered: null where its parameters do not narrow on
    one. Never re-validated on the way out: a value stored once is always read back."""

    model_config = ConfigDict(frozen=True)

    store_id: str | None = Field(default=None, description="The store whose orders count.")
    category: str | None = Field(default=None, description="The category of the stores whose orders count.")
    city: str | None = Field(default=None, description="The city (of the stores, or of new customers).")
    country: str | None = Field(default=None, description="The country, ISO 3166-1 alpha-2.")


TARGETING_ATTRIBUTES: tuple[str, ...] = tuple(TargetingAttributes.model_fields)

# What clients filter by, on every route that filters: one optional value per targeting attribute.
TargetingFilters = create_model(
    "TargetingFilters",
    __config__=ConfigDict(frozen=True, extra="forbid"),
    **{
        name: (
            FILTER_FORMS.get(name, FilterText) | None,
            Field(default=None, description=f"The segment's {name} equals this."),
        )
        for name in TARGETING_ATTRIBUTES
    },
)


def given_attributes(model: BaseModel) -> dict[str, str]:
    """The targeting attributes a model (a filter, a request) gives, by name."""
    return {name: value for name in TARGETING_ATTRIBUTES if (value := getattr(model, name, None)) is not None}


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

    labels: dict[str, str]
    calculated_at: datetime


SEGMENT_ANSWER_FIELDS: tuple[str, ...] = tuple(SegmentAnswer.model_fields)


class InvalidLabelFilter(ValueError):
    pass


LabelFilters = tuple[tuple[str, str], ...]


def parse_labels(labels: Iterable[str]) -> LabelFilters:
    """`["team:growth", ...]` -> `(("team", "growth"), ...)`; the value may itself hold colons.
    Pairs, not a dict: all must match, so two values of one key match nothing rather than the last."""
    parsed = []
    for label in labels:
        key, sep, value = label.partition(":")
        if not sep or not key or not value:
            raise InvalidLabelFilter(f"{label!r} is not of the form key:value")
        parsed.append((key, value))
    return tuple(parsed)
