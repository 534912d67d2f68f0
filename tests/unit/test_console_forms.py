"""The console's pieces that need no server: forms from the types' JSON Schema, what typed text
becomes, the API's errors beside their fields, the chart's geometry, freshness, the audit's changes."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from api.console.audit_trail import changes
from api.console.chart import member_count_chart, nice_ceiling
from api.console.forms import create_body, errors_beside, labels_from, param_fields, params_from
from api.console.overview import owed_partition
from api.console.segment_types import segment_type_named, segment_types
from api.errors import InvalidInput
from resources.config_store.segments import AuditEntry
from resources.settings import Settings


def fields_of(type_name: str):
    return param_fields(segment_type_named(type_name)["params_schema"])


@pytest.mark.parametrize("segment_type", [t["name"] for t in segment_types()])
def test_every_parameter_of_every_type_gets_a_labelled_typed_field(segment_type: str) -> None:
    schema = segment_type_named(segment_type)["params_schema"]
    fields = param_fields(schema)
    assert {f.key for f in fields} == set(schema["properties"])
    assert [f.required for f in fields] == sorted((f.required for f in fields), reverse=True)  # required first
    for f in fields:
        assert f.label and f.help
        assert f.name == f"params.{f.key}" and f.html_id == f"field-params-{f.key}"
        spec = schema["properties"][f.key]
        if spec.get("type") == "integer":
            assert f.kind == "integer" and f.attributes["step"] == "1"
            assert f.attributes["min"] == str(spec["minimum"]) and f.attributes["max"] == str(spec["maximum"])


def test_typed_text_becomes_the_params_the_api_takes() -> None:
    fields = fields_of("high_spenders")
    form = {
        "params.min_total_amount": " 250.5 ",
        "params.lookback_days": "30",
        "params.city": "",
        "params.country": "ES",
    }
    assert params_from(fields, form) == {"min_total_amount": 250.5, "lookback_days": 30, "country": "ES"}
    # Text that is not a number goes to the API as it is, so that its message names the field.
    assert params_from(fields, {"params.lookback_days": "thirty"}) == {"lookback_days": "thirty"}


def test_the_apis_errors_land_beside_their_fields() -> None:
    fields = fields_of("new_customers")
    form = {"name": " ", "params.max_days_since_signup": "400", "labels": "Team: growth"}
    with pytest.raises(InvalidInput) as raised:
        create_body("new_customers", fields, form)
    errors = errors_beside(raised.value, ["name", "labels", "status", *(f.name for f in fields)])
    assert set(errors.by_field) == {"name", "labels", "params.max_days_since_signup"}
    assert "365" in errors.by_field["params.max_days_since_signup"][0]
    assert errors.first_of(fields) == "params.max_days_since_signup"
    assert not errors.general


def test_labels_are_one_key_value_per_line() -> None:
    assert labels_from("team: growth\n\n region : EU:west \n") == {"team": "growth", "region": "EU:west"}
    for bad in ("no colon here", "team: a\nteam: b", ": value"):
        with pytest.raises(InvalidInput) as raised:
            labels_from(bad)
        assert raised.value.details[0]["field"] == "labels"


def test_the_chart_runs_from_the_oldest_partition_to_the_newest() -> None:
    history = [
        {"partition": "2026-12-03", "member_count": 120},
        {"partition": "2026-12-02", "member_count": 0},
        {"partition": "2026-12-01", "member_count": 80},
    ]
    chart = member_count_chart(history)
    assert [p.partition for p in chart.points] == ["2026-12-01", "2026-12-02", "2026-12-03"]
    xs = [p.x for p in chart.points]
    assert xs == sorted(xs) and xs[0] == chart.left and xs[-1] == chart.right
    assert chart.points[1].y == chart.bottom  # zero members: on the axis
    assert [label for _, label in chart.y_ticks] == ["0", "100", "200"]
    assert member_count_chart([]) is None
    assert [nice_ceiling(n) for n in (0, 1, 7, 10, 11, 120, 999, 1001)] == [1, 1, 10, 10, 20, 200, 1000, 2000]


def test_a_segment_is_fresh_once_its_calculation_is_of_the_partition_the_schedule_owes() -> None:
    daily = Settings(refresh_hour_of_day=1, refresh_minute_of_hour=15)
    # Before 04:15 UTC (the refresh plus 3 h) yesterday's partition is not owed yet.
    assert owed_partition(daily, datetime(2026, 12, 6, 4, 0, tzinfo=timezone.utc)) == "2026-12-04"
    assert owed_partition(daily, datetime(2026, 12, 6, 4, 15, tzinfo=timezone.utc)) == "2026-12-05"
    hourly = Settings(partition_granularity="hourly", refresh_minute_of_hour=15)
    assert owed_partition(hourly, datetime(2026, 12, 6, 10, 44, tzinfo=timezone.utc)) == "2026-12-06-08:00"
    assert owed_partition(hourly, datetime(2026, 12, 6, 10, 45, tzinfo=timezone.utc)) == "2026-12-06-09:00"


def test_an_audit_entry_shows_each_changed_field_before_and_after() -> None:
    before = {
        "name": "A",
        "status": "active",
        "params": {"min_orders": 2, "lookback_days": 30},
        "labels": {"team": "x"},
        "version": 1,
    }
    after = {
        "name": "B",
        "status": "active",
        "params": {"min_orders": 3, "lookback_days": 30},
        "labels": {},
        "version": 2,
    }
    entry = AuditEntry(at=datetime.now(timezone.utc), actor="k", action="update", version=2, before=before, after=after)
    assert [(c.field, c.before, c.after) for c in changes(entry)] == [
        ("name", "A", "B"),
        ("params.min_orders", "2", "3"),
        ("labels.team", "x", None),
    ]
