"""The segment forms: their fields (the params' from the type's JSON Schema, as `GET
/v1/segment-types` gives it), what the typed text becomes, and the API's errors put beside the
field they name.

The browser's own checks are off (`novalidate`): the API's validation is the one that counts, and
its messages are the ones shown, so that the console and the API never disagree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from api.config.input import validated_params
from api.config.schemas import SegmentCreate, SegmentUpdate
from api.errors import InvalidInput, invalid_field, invalid_input, validation_details
from resources.config_store.segments import Segment

Kind = Literal["text", "textarea", "integer", "number", "select", "checkbox"]
_INTEGER = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True)
class FormField:
    name: str  # as the API names it in its errors: `name`, `params.min_orders`
    label: str
    kind: Kind
    required: bool = False
    help: str = ""
    options: tuple[str, ...] = ()
    attributes: dict[str, str] = field(default_factory=dict)  # HTML: min, max, step, maxlength

    @property
    def html_id(self) -> str:
        return "field-" + self.name.replace(".", "-")

    @property
    def key(self) -> str:
        return self.name.rsplit(".", 1)[-1]


NAME = FormField("name", "Name", "text", required=True, attributes={"maxlength": "200", "autocomplete": "off"})
DESCRIPTION = FormField(
    "description", "Description", "textarea", help="Optional.", attributes={"maxlength": "2000", "rows": "3"}
)
LABELS = FormField(
    "labels",
    "Labels",
    "textarea",
    help="Optional. One per line, as key: value. Keys: lower-case letters, digits, '_', '.', '-'.",
    attributes={"rows": "3", "autocomplete": "off"},
)
STATUS = FormField(
    "status", "Status", "select", options=("active", "paused"), help="Only active segments are calculated."
)
PARTITION = FormField(
    "partition",
    "Preview partition",
    "text",
    help="Optional: the partition to count on (YYYY-MM-DD, or YYYY-MM-DD-HH:00 when hourly); default the latest closed one.",
    attributes={"autocomplete": "off", "inputmode": "numeric"},
)


def param_fields(schema: dict[str, Any]) -> list[FormField]:
    """One field per parameter, typed from its schema; the required ones first."""
    required = set(schema.get("required", ()))
    fields = [
        _param_field(name, _concrete(spec), name in required) for name, spec in schema.get("properties", {}).items()
    ]
    return sorted(fields, key=lambda f: not f.required)


def _concrete(spec: dict[str, Any]) -> dict[str, Any]:
    """An optional parameter's schema is `anyOf: [<type>, null]`: its one type, with the outer
    title, description and default."""
    options = [o for o in spec.get("anyOf", ()) if o.get("type") != "null"]
    if len(options) != 1:
        return spec
    return {**options[0], **{k: v for k, v in spec.items() if k != "anyOf"}}


def _param_field(name: str, spec: dict[str, Any], required: bool) -> FormField:
    label = spec.get("title") or name
    notes = [spec.get("description", "").rstrip(".")] if spec.get("description") else []
    attributes: dict[str, str] = {}
    kind: Kind = "text"
    schema_type = spec.get("type")
    if "enum" in spec:
        kind = "select"
    elif schema_type in ("integer", "number"):
        kind = schema_type
        attributes["step"] = "1" if kind == "integer" else "any"
        attributes["inputmode"] = "numeric" if kind == "integer" else "decimal"
        for bound, attribute in (("minimum", "min"), ("maximum", "max")):
            if bound in spec:
                attributes[attribute] = _number(spec[bound])
        notes.append(_range(spec))
    elif schema_type == "boolean":
        kind = "checkbox"
    elif schema_type == "string" and "maxLength" in spec:
        attributes["maxlength"] = str(spec["maxLength"])
    if spec.get("default") is not None:
        notes.append(f"default {_number(spec['default'])}")
    if not required:
        notes.append("optional")
    help_text = "; ".join(n for n in notes if n) + "."
    return FormField(
        f"params.{name}",
        label,
        kind,
        required=required,
        help=help_text[:1].upper() + help_text[1:],
        options=tuple(str(o) for o in spec.get("enum", ())),
        attributes=attributes,
    )


def _number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _range(spec: dict[str, Any]) -> str:
    low = f"at least {_number(spec['minimum'])}" if "minimum" in spec else None
    if "exclusiveMinimum" in spec:
        low = f"more than {_number(spec['exclusiveMinimum'])}"
    high = f"at most {_number(spec['maximum'])}" if "maximum" in spec else None
    if "exclusiveMaximum" in spec:
        high = f"less than {_number(spec['exclusiveMaximum'])}"
    if "minimum" in spec and "maximum" in spec:
        return f"{_number(spec['minimum'])} to {_number(spec['maximum'])}"
    return ", ".join(p for p in (low, high) if p)


# --- what the typed text becomes ---------------------------------------------------------------


def params_from(fields: Iterable[FormField], form: dict[str, str]) -> dict[str, Any]:
    """The params as the API takes them. Empty fields are left out (their default applies, or the
    API says the field is required); text that is not a number is sent as it is, so that the
    API's own message names the field."""
    params: dict[str, Any] = {}
    for f in fields:
        if f.kind == "checkbox":
            params[f.key] = f.name in form
            continue
        text = form.get(f.name, "").strip()
        if not text:
            continue
        if f.kind == "integer" and _INTEGER.fullmatch(text):
            params[f.key] = int(text)
        elif f.kind == "number":
            try:
                params[f.key] = float(text)
            except ValueError:
                params[f.key] = text
        else:
            params[f.key] = text
    return params


def labels_from(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, colon, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if not colon or not key:
            raise invalid_field("labels", f"line {number} is not of the form key: value")
        if key in labels:
            raise invalid_field("labels", f"the key {key!r} is given twice")
        labels[key] = value
    return labels


def labels_text(labels: dict[str, str]) -> str:
    return "\n".join(f"{key}: {value}" for key, value in labels.items())


def create_body(segment_type: str, fields: list[FormField], form: dict[str, str]) -> SegmentCreate:
    """The body of `POST /v1/segments` from the form; InvalidInput naming every field wrong at once."""
    problems: list[dict[str, str]] = []
    labels = _collect(problems, lambda: labels_from(form.get("labels", ""))) or {}
    params = params_from(fields, form)
    data = {
        "name": form.get("name", ""),
        "segment_type": segment_type,
        "params": params,
        "labels": labels,
        "description": form.get("description", "").strip() or None,
        "status": form.get("status", "active"),
    }
    body = _collect(problems, lambda: _validated(SegmentCreate, data))
    _collect(problems, lambda: validated_params(segment_type, params))
    if problems or body is None:
        raise invalid_input(problems)
    return body


def update_body(segment: Segment, fields: list[FormField], form: dict[str, str]) -> SegmentUpdate:
    """The body of `PATCH /v1/segments/{id}`: name, description, params and labels as the form holds them."""
    problems: list[dict[str, str]] = []
    labels = _collect(problems, lambda: labels_from(form.get("labels", ""))) or {}
    params = params_from(fields, form)
    data = {
        "name": form.get("name", ""),
        "params": params,
        "labels": labels,
        "description": form.get("description", "").strip() or None,
    }
    body = _collect(problems, lambda: _validated(SegmentUpdate, data))
    _collect(problems, lambda: validated_params(segment.segment_type, params))
    if problems or body is None:
        raise invalid_input(problems)
    return body


def _validated(model: type[SegmentCreate] | type[SegmentUpdate], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        # As the API words a body's errors (api/errors.py): the same field names, the same messages.
        raise invalid_input(validation_details(list(error.errors()))) from error


def _collect(problems: list[dict[str, str]], check: Any) -> Any:
    try:
        return check()
    except InvalidInput as error:
        problems.extend(error.details or [{"field": "body", "message": error.message}])
        return None


def segment_values(segment: Segment, fields: list[FormField]) -> dict[str, str]:
    """A stored segment as its edit form shows it."""
    values = {
        "name": segment.name,
        "description": segment.description or "",
        "labels": labels_text(segment.labels),
    }
    for f in fields:
        value = segment.params.get(f.key)
        if f.kind == "checkbox":
            if value:
                values[f.name] = "on"
        elif value is not None:
            values[f.name] = _number(value)
    return values


# --- the API's errors beside their fields --------------------------------------------------------


@dataclass
class FormErrors:
    by_field: dict[str, list[str]] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)

    def first_of(self, fields: Iterable[FormField]) -> str | None:
        """The first field in the form's order with an error: the one to put the focus on."""
        return next((f.name for f in fields if f.name in self.by_field), None)

    def __bool__(self) -> bool:
        return bool(self.by_field or self.general)


def errors_beside(error: InvalidInput, names: Iterable[str]) -> FormErrors:
    """Each of the 422's details under the field it names (`labels.team` under `labels`); the rest,
    such as an unknown segment type, above the form."""
    known = set(names)
    errors = FormErrors()
    for detail in error.details or [{"field": "body", "message": error.message}]:
        name = detail["field"]
        while name not in known and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in known:
            errors.by_field.setdefault(name, []).append(detail["message"])
        else:
            errors.general.append(f"{detail['field']}: {detail['message']}")
    return errors
