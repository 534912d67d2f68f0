"""What a client sends to config management, checked before the config store sees it: params
against their type, text PostgreSQL could not store, If-Match versions, list cursors, label filters;
and query parameters that take one value (on the routes that read any). Every failure is a 4xx
that names the field."""

from __future__ import annotations

import base64
import binascii
import math
import re
from typing import Any

from pydantic import TypeAdapter, ValidationError

from api.errors import (
    PreconditionRequired,
    invalid_field,
    invalid_input,
    validation_details,
)
from resources.config_store.segments import LabelKey, LabelValue
from resources.names import ID_PATTERN
from resources.targeting import InvalidLabelFilter, parse_labels, shown_as_written
from segmentation_assets.core.segment_types import SEGMENT_TYPES

# `3`, `"3"` and `W/"3"` all name version 3; the version is the whole entity tag.
_IF_MATCH = re.compile(r'(?:W/)?("?)([1-9][0-9]{0,8})\1')
_CURSOR_PREFIX = "after:"
_label_key = TypeAdapter(LabelKey)
_label_value = TypeAdapter(LabelValue)


def known_segment_type(name: str) -> str:
    if name not in SEGMENT_TYPES:
        raise invalid_field("segment_type", f"unknown segment type; known: {', '.join(sorted(SEGMENT_TYPES))}")
    return name


def validated_params(segment_type_name: str, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str | None]]:
    """The params as stored (defaults filled in) and the targeting attributes derived from them.

    Strict: an integer parameter takes a JSON integer, not `"30"` nor `true`, so that a typo is an
    error rather than a silently different segment."""
    segment_type = SEGMENT_TYPES[known_segment_type(segment_type_name)]
    try:
        parsed = segment_type.params_model.model_validate(params, strict=True)
    except ValidationError as error:
        raise invalid_input(validation_details(list(error.errors()), prefix=("params",))) from error
    stored = parsed.model_dump(mode="json", exclude_none=True)
    require_storable(params=stored)
    targeting = parsed.targeting()
    # The list filter refuses control characters, so a segment holding one could never be found by
    # it; narrowing scopes join values with one; and readers see these values. Checked on what
    # clients send, not in the params model: the job validates stored params with it and must not
    # fail on older segments.
    for name, value in targeting.items():
        try:
            shown_as_written(value or "")
        except ValueError as error:
            raise invalid_field(f"params.{name}", str(error)) from error
    return stored, targeting


def require_storable(**fields: Any) -> None:
    """PostgreSQL refuses NUL characters and unpaired surrogates in text and JSON, and JSON has no
    NaN or Infinity: say which field holds one (422) rather than fail on the INSERT (500)."""
    problems = [problem for name, value in fields.items() for problem in _unstorable(value, name)]
    if problems:
        raise invalid_input([{"field": f, "message": m} for f, m in problems])


def _unstorable(value: Any, path: str) -> list[tuple[str, str]]:
    if isinstance(value, str):
        if "\x00" in value:
            return [(path, "must not contain NUL characters")]
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return [(path, "must be valid Unicode (it holds an unpaired surrogate)")]
        return []
    if isinstance(value, float) and not math.isfinite(value):
        return [(path, "must be a finite number")]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in (*_unstorable(k, f"{path}.{k}"), *_unstorable(v, f"{path}.{k}"))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _unstorable(v, f"{path}.{i}")]
    return []


def expected_version(if_match: str | None) -> int:
    """The version an update is based on, from `If-Match`: required (428), and a version (422)."""
    if if_match is None:
        raise PreconditionRequired(
            "send 'If-Match: <version>' with the version you read (the segment's ETag), so that no "
            "concurrent change is overwritten"
        )
    match = _IF_MATCH.fullmatch(if_match.strip())
    if match is None:
        raise invalid_field("If-Match", 'must be one version, such as 3, "3" or W/"3"')
    return int(match.group(2))


def etag(version: int) -> str:
    return f'"{version}"'


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    """The id after which the page starts; the cursor is opaque to clients (keyset on id)."""
    if cursor is None:
        return None
    try:
        decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    last_id = decoded.removeprefix(_CURSOR_PREFIX)
    if not decoded.startswith(_CURSOR_PREFIX) or not re.fullmatch(ID_PATTERN, last_id):
        raise invalid_field("cursor", "not a cursor from a previous page's next_cursor")
    return last_id


def label_filters(labels: list[str]) -> tuple[tuple[str, str], ...]:
    """`key:value` filters, all of which must match (two values of one key match nothing); a key or
    value no label can have is an error, not no match."""
    parsed: list[tuple[str, str]] = []
    for label in labels:
        try:
            [(key, value)] = parse_labels([label])
            parsed.append((_label_key.validate_python(key), _label_value.validate_python(value)))
        except (InvalidLabelFilter, ValidationError) as error:
            raise invalid_field("label", f"{label!r} is not a label filter of the form key:value") from error
    return tuple(parsed)
