"""Lookup filters applied in the process to a customer's whole segment list."""

from __future__ import annotations

import orjson
import pytest

from resources.serving.filters import SegmentFilter
from resources.targeting import (
    TARGETING_ATTRIBUTES,
    InvalidLabelFilter,
    parse_labels,
)

SEGMENTS = [
    {"segment_id": "s1", "segment_type": "new_customers", "city": "Madrid", "store_id": None, "category": None, "country": "ES", "labels": {"team": "growth"}},
    {"segment_id": "s2", "segment_type": "high_spenders", "city": None, "store_id": "st1", "category": "grocery", "country": None, "labels": {"team": "crm"}},
    {"segment_id": "s3", "segment_type": "high_spenders", "city": "Madrid", "store_id": "st1", "category": "pharmacy", "country": "ES", "labels": {"team": "growth", "tier": "a:b"}},
]


def _filter(segment_types=(), labels=(), **attributes) -> SegmentFilter:
    assert set(attributes) <= set(TARGETING_ATTRIBUTES)
    return SegmentFilter.of(segment_types=segment_types, attributes=attributes, labels=labels)


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({}, ["s1", "s2", "s3"]),
        ({"segment_types": ["high_spenders"]}, ["s2", "s3"]),
        ({"segment_types": ["high_spenders", "new_customers"]}, ["s1", "s2", "s3"]),
        ({"city": "Madrid"}, ["s1", "s3"]),
        ({"city": "Madrid", "store_id": "st1"}, ["s3"]),
        ({"category": "grocery"}, ["s2"]),
        ({"labels": ["team:growth"]}, ["s1", "s3"]),
        ({"labels": ["team:growth", "tier:a:b"]}, ["s3"]),  # the value may hold colons
        ({"labels": ["team:growth", "team:crm"]}, []),  # all must match: one key, two values
        ({"labels": ["team:growth", "team:growth"]}, ["s1", "s3"]),
        ({"country": "FR"}, []),
    ],
)
def test_filters_select_by_equality_and_all_labels(kwargs, expected) -> None:
    assert [s["segment_id"] for s in _filter(**kwargs).apply(SEGMENTS, archived=())] == expected


def test_archived_segments_are_left_out_even_without_filters() -> None:
    assert [s["segment_id"] for s in SegmentFilter.of().apply(SEGMENTS, archived={"s2"})] == ["s1", "s3"]


@pytest.mark.parametrize(
    "kwargs, archived",
    [({}, ()), ({}, {"s2"}), ({"city": "Madrid"}, ()), ({"labels": ["team:growth"]}, {"s3"})],
)
def test_a_serialized_list_gives_the_same_answer_as_the_parsed_one(kwargs, archived) -> None:
    selected = _filter(**kwargs)
    answer = orjson.dumps({"segments": selected.apply_serialized(orjson.dumps(SEGMENTS), archived)})
    assert orjson.loads(answer) == {"segments": selected.apply(SEGMENTS, archived)}


@pytest.mark.parametrize("label", ["nocolon", ":value", "key:"])
def test_a_label_filter_needs_key_and_value(label: str) -> None:
    with pytest.raises(InvalidLabelFilter):
        parse_labels([label])
