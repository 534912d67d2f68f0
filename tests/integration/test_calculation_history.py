"""Calculation history on the real pipeline: what `GET /v1/segments/{id}/history` answers after
calculations of several partitions, computed here from the independent reference's member sets.

One lake, one type (new_customers: its members move from day to day), four runs:
23rd (A, B), then C created and 25th (A, B, C; the 24th skipped), then the 24th late (older than
what is served), then the 25th again; B's params broken behind the API's back before the last.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.main import create_app
from cli.runs import materialize_partition
from devtools.synthetic_lake import generate_lake
from resources.config_store.api_keys import ApiKeyRepository
from resources.config_store.database import engine_for, session_factory
from resources.settings import Settings
from tests.reference import ReferenceLake

pytestmark = pytest.mark.integration

TYPE = "new_customers"
PARAMS = {
    "A": {"max_days_since_signup": 7},
    "B": {"max_days_since_signup": 3, "max_orders": 0},
    "C": {"max_days_since_signup": 10},
}


def as_of(partition: str) -> datetime:
    return datetime.combine(date.fromisoformat(partition) + timedelta(days=1), datetime.min.time(), timezone.utc)


@pytest.fixture(scope="module")
def history(settings: Settings):
    generate_lake(settings.lake_uri, customers=800, days=40, seed=11, end=date(2026, 11, 25))
    reference = ReferenceLake(Path(settings.lake_uri))
    keys = ApiKeyRepository(session_factory(settings.database_url))
    admin = {"Authorization": f"Bearer {keys.create('history-admin', 'admin')}"}
    reader = {"Authorization": f"Bearer {keys.create('history-reader', 'read')}"}

    def run(partition: str) -> None:
        outcome = materialize_partition(settings, partition, [TYPE])
        assert outcome.success, "\n".join(outcome.summary_lines)

    with TestClient(create_app(settings)) as client:

        def create(name: str) -> str:
            response = client.post("/v1/segments", json={"name": name, "segment_type": TYPE, "params": PARAMS[name]}, headers=admin)
            assert response.status_code == 201, response.text
            return response.json()["id"]

        ids = {"A": create("A"), "B": create("B")}
        run("2026-11-23")
        ids["C"] = create("C")
        run("2026-11-25")
        run("2026-11-24")
        with engine_for(settings.database_url).begin() as connection:
            connection.execute(
                text("UPDATE segments SET params = '{\"max_days_since_signup\": \"soon\"}' WHERE id = :id"), {"id": ids["B"]}
            )
        run("2026-11-25")

        def members(name: str, partition: str) -> set[str]:
            return reference.members(TYPE, as_of(partition), PARAMS[name])

        def get(segment_id: str, headers: dict[str, str] = reader):
            return client.get(f"/v1/segments/{segment_id}/history", headers=headers)

        yield get, ids, members, client, admin


def entries(get, segment_id: str) -> list[dict]:
    response = get(segment_id)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["segment_id"] == segment_id
    return body["calculations"]


def test_one_entry_per_partition_newest_first_with_counts_against_the_latest_earlier_one(history) -> None:
    get, ids, members, _, _ = history
    calculations = entries(get, ids["A"])
    assert [c["partition"] for c in calculations] == ["2026-11-25", "2026-11-24", "2026-11-23"]
    by_partition = {c["partition"]: c for c in calculations}
    first = by_partition["2026-11-23"]
    assert (first["member_count"], first["entered"], first["exited"]) == (len(members("A", "2026-11-23")), first["member_count"], 0)
    # The 25th was computed before the 24th existed: against the 23rd. Computed again at the end,
    # with the 24th there: against the 24th, and only that latest calculation is listed.
    latest = by_partition["2026-11-25"]
    now, before = members("A", "2026-11-25"), members("A", "2026-11-24")
    assert (latest["member_count"], latest["entered"], latest["exited"]) == (len(now), len(now - before), len(before - now))
    late = by_partition["2026-11-24"]
    now, before = members("A", "2026-11-24"), members("A", "2026-11-23")
    assert (late["member_count"], late["entered"], late["exited"]) == (len(now), len(now - before), len(before - now))
    assert any(c["entered"] or c["exited"] for c in calculations[:2]), "the segment never moved: the counts prove nothing"


def test_served_marks_the_calculation_behind_the_alias_and_every_calculation_names_its_index(history) -> None:
    get, ids, _, client, admin = history
    calculations = entries(get, ids["A"])
    assert [c["served"] for c in calculations] == [True, False, False]
    stats = client.get(f"/v1/segments/{ids['A']}/stats", headers=admin).json()
    assert calculations[0]["index"] == stats["index"]
    assert datetime.fromisoformat(stats["calculated_at"]) == datetime.fromisoformat(calculations[0]["calculated_at"])
    assert len({c["index"] for c in calculations}) == 3 and all(c["index"] for c in calculations)


def test_a_segment_created_later_starts_with_every_member_entered(history) -> None:
    get, ids, members, _, _ = history
    calculations = entries(get, ids["C"])
    assert [c["partition"] for c in calculations] == ["2026-11-25", "2026-11-24"]
    late = calculations[1]  # no calculation before the 24th: its first, though computed after the 25th
    assert (late["entered"], late["exited"]) == (len(members("C", "2026-11-24")), 0)
    now, before = members("C", "2026-11-25"), members("C", "2026-11-24")
    assert (calculations[0]["entered"], calculations[0]["exited"]) == (len(now - before), len(before - now))


def test_a_broken_config_is_left_out_and_its_history_stops(history) -> None:
    get, ids, _, _, _ = history
    calculations = entries(get, ids["B"])
    # Its first calculation of the 25th is listed; the last run, which refused its params, added none.
    assert [c["partition"] for c in calculations] == ["2026-11-25", "2026-11-24", "2026-11-23"]
    assert calculations[0]["served"] is False  # the served index was built without it


def test_unknown_segment_is_404_archived_keeps_its_history_and_a_key_is_needed(history) -> None:
    get, ids, _, client, admin = history
    assert get("seg_unknown").status_code == 404
    assert client.get(f"/v1/segments/{ids['A']}/history").status_code == 401
    assert client.get(f"/v1/segments/{ids['A']}/history?limit=0", headers=admin).status_code == 422
    assert [c["partition"] for c in client.get(f"/v1/segments/{ids['A']}/history?limit=1", headers=admin).json()["calculations"]] == ["2026-11-25"]
    assert client.delete(f"/v1/segments/{ids['C']}", headers=admin).status_code == 204
    deadline = datetime.now(timezone.utc) + timedelta(seconds=30)
    while datetime.now(timezone.utc) < deadline:  # each API process re-reads archived ids every few seconds
        calculations = entries(get, ids["C"])
        if not calculations[0]["served"]:
            break
    assert len(calculations) == 2 and not any(c["served"] for c in calculations)
