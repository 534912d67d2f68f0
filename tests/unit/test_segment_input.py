"""Checks on what clients send to config management: If-Match, cursors, label filters, storable and
visible text."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

from api.errors import InvalidInput, PreconditionRequired, field_path, validation_details
from api.config.input import (
    decode_cursor,
    encode_cursor,
    expected_version,
    label_filters,
    require_storable,
    validated_params,
)
from api.config.schemas import SegmentCreate, SegmentUpdate
from resources.targeting import shown_as_written


@pytest.mark.parametrize("header", ["3", '"3"', 'W/"3"', ' "3" '])
def test_if_match_names_a_version_in_every_usual_form(header: str) -> None:
    assert expected_version(header) == 3


def test_if_match_is_required() -> None:
    with pytest.raises(PreconditionRequired):
        expected_version(None)


@pytest.mark.parametrize("header", ["", "*", "0", "-1", "three", '"3', '"3", "4"', "3.0", "99999999999", 'W/"x"'])
def test_if_match_that_is_not_one_version_names_the_header(header: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        expected_version(header)
    assert raised.value.details[0]["field"] == "If-Match"


@pytest.mark.parametrize("segment_id", ["seg_0123456789abcdef", "a", "A.b:c@d-e_f"])
def test_cursor_round_trips_and_is_opaque(segment_id: str) -> None:
    cursor = encode_cursor(segment_id)
    assert segment_id not in cursor
    assert decode_cursor(cursor) == segment_id


@pytest.mark.parametrize("cursor", ["", "!!!", "bm90IGEgY3Vyc29y", encode_cursor("x")[:-1] + "*", "YWZ0ZXI6"])
def test_a_cursor_not_made_here_names_the_cursor(cursor: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        decode_cursor(cursor)
    assert raised.value.details[0]["field"] == "cursor"


def test_label_filters_split_on_the_first_colon() -> None:
    assert label_filters(["team:growth", "url:a:b"]) == (("team", "growth"), ("url", "a:b"))


@pytest.mark.parametrize("label", ["team", ":x", "team:", "Team:x", "team:\x00"])
def test_label_filter_that_no_label_can_match_names_label(label: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        label_filters([label])
    assert raised.value.details[0]["field"] == "label"


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"name": "a\x00b"}, "name"),
        ({"labels": {"team": "\ud800"}}, "labels.team"),
        ({"params": {"min_total_amount": float("inf")}}, "params.min_total_amount"),
        ({"params": {"list": [1.0, float("nan")]}}, "params.list.1"),
        ({"params": {"k\x00": "v"}}, "params.k\x00"),
    ],
)
def test_text_postgresql_cannot_store_names_its_field(fields: dict, named: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        require_storable(**fields)
    assert [d["field"] for d in raised.value.details] == [named]


def test_storable_text_passes() -> None:
    require_storable(name="Madrid · 30 días 🎯", description="line\nline", labels={"team": "growth"}, params={"x": 1.5})


def test_params_are_checked_strictly_against_their_type() -> None:
    stored, targeting = validated_params("new_customers", {"max_days_since_signup": 30, "city": "Madrid"})
    assert stored == {"max_days_since_signup": 30, "max_orders": 0, "city": "Madrid"}
    assert targeting == {"store_id": None, "category": None, "city": "Madrid", "country": None}
    for wrong in ("30", True, 30.0):
        with pytest.raises(InvalidInput) as raised:
            validated_params("new_customers", {"max_days_since_signup": wrong})
        assert raised.value.details[0]["field"] == "params.max_days_since_signup"


def test_unknown_type_names_segment_type() -> None:
    with pytest.raises(InvalidInput) as raised:
        validated_params("no_such_type", {})
    assert raised.value.details[0]["field"] == "segment_type"


def test_field_path_names_fields_as_the_client_wrote_them() -> None:
    assert field_path(("body", "params", "max_orders")) == "params.max_orders"
    assert field_path(("body", "labels", "Team", "[key]")) == "labels.Team"
    assert field_path(("query", "limit")) == "limit"
    assert field_path(("query", "status", 0)) == "status"
    assert field_path(("body", "params", "list", 0)) == "params.list.0"
    assert field_path(("body",)) == "body"


# Written out here, not derived from unicodedata as the check is: bidirectional controls,
# zero-width and other format characters, control characters and line separators (NUL has a
# message of its own: see the storable text above).
HIDDEN = [
    *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C,
    0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, 0x00AD, 0xE0001,
    0x01, 0x09, 0x0A, 0x0D, 0x1B, 0x7F, 0x85, 0x9F, 0x2028, 0x2029,
]
SHOWN = ["Crème brûlée", "Ünïcødé ñ", "東京の店舗", "顧客 🎯🚀", "I ❤️ this", "two  spaces", "שלום", "مرحبا", "a\u00a0b"]


def _create_problems(**fields: Any) -> list[dict[str, str]]:
    body = {"name": "ok", "segment_type": "new_customers", "params": {}, **fields}
    try:
        SegmentCreate.model_validate(body)
    except ValidationError as error:
        return validation_details(list(error.errors()), prefix=("body",))
    return []


@pytest.mark.parametrize("code_point", HIDDEN, ids=[f"U+{c:04X}" for c in HIDDEN])
def test_a_hidden_character_in_typed_text_names_the_field_the_character_and_where(code_point: int) -> None:
    text = f"Promo{chr(code_point)}x"
    message = f"(U+{code_point:04X}) at position 5"
    for field, fields in [
        ("name", {"name": text}),
        ("labels.team", {"labels": {"team": text}}),
        ("description", {"description": text}),
    ]:
        if field == "description" and code_point in (0x09, 0x0A, 0x0D):
            assert _create_problems(**fields) == []  # a description may span lines
            continue
        [problem] = _create_problems(**fields)
        assert problem["field"] == field, problem
        # A label value's older one-line pattern answers first for C0 controls, in its own words.
        assert message in problem["message"] or (field.startswith("labels") and code_point < 0x20), problem
    with pytest.raises(InvalidInput) as raised:
        validated_params("new_customers", {"max_days_since_signup": 3, "city": text})
    assert raised.value.details[0]["field"] == "params.city" and message in raised.value.details[0]["message"]
    with pytest.raises(ValueError, match=re.escape(message)):
        shown_as_written(text)


@pytest.mark.parametrize("text", SHOWN)
def test_letters_of_any_script_emoji_and_spaces_are_accepted(text: str) -> None:
    assert shown_as_written(text) == text
    assert _create_problems(name=text, labels={"team": text}, description=f"{text}\n{text}") == []
    assert validated_params("new_customers", {"max_days_since_signup": 3, "city": text})[1]["city"] == text
    assert SegmentUpdate.model_validate({"name": f"  {text} "}).name == text


def test_label_filters_still_find_values_stored_before_the_rule() -> None:
    assert label_filters(["team:a\u202eb"]) == (("team", "a\u202eb"),)
