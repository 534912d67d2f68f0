"""Every lookup after the real pipeline (Spark, Dagster, index, alias switch) over a
generated lake, against the independent reference (`tests.reference`).

Chunk documents are made small, so that the bigger segments span dozens of them.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from cli.runs import materialize_partition
from devtools.synthetic_lake import generate_lake
from resources.config_store.api_keys import ApiKeyRepository
from resources.config_store.database import session_factory
from resources.settings import Settings
from tests.reference import ReferenceLake

pytestmark = pytest.mark.integration

END = date(2026, 11, 25)
PARTITION = END.isoformat()
T = datetime(2026, 11, 26, tzinfo=timezone.utc)
CHUNK = 40

SEGMENTS = [
    {"name": "new this month", "segment_type": "new_customers", "params": {"max_days_since_signup": 30, "max_orders": 3}, "labels": {"team": "growth"}},
    {"name": "new, no order", "segment_type": "new_customers", "params": {"max_days_since_signup": 60}},
    {"name": "frequent", "segment_type": "frequent_buyers", "params": {"min_orders": 3, "lookback_days": 30}},
    {"name": "big spenders", "segment_type": "high_spenders", "params": {"min_total_amount": 150, "lookback_days": 30}},
]


@pytest.fixture(scope="module")
def pipeline(settings: Settings, tmp_path_factory: pytest.TempPathFactory):
    settings = settings.model_copy(
        update={"ingest_chunk_size": CHUNK, "api_search_budget_seconds": 5.0, "state_dir": Path(tmp_path_factory.mktemp("state"))}
    )
    generate_lake(settings.lake_uri, customers=1500, days=45, seed=7, end=END)
    keys = ApiKeyRepository(session_factory(settings.database_url))
    admin = {"Authorization": f"Bearer {keys.create('pipeline-admin', 'admin')}"}
    reader = {"Authorization": f"Bearer {keys.create('pipeline-reader', 'read')}"}
    with TestClient(create_app(settings)) as client:
        created = {}
        for segment in SEGMENTS:
            response = client.post("/v1/segments", json=segment, headers=admin)
            assert response.status_code == 201, response.text
            created[response.json()["id"]] = segment
        outcome = materialize_partition(settings, PARTITION, sorted({s["segment_type"] for s in SEGMENTS}))
        assert outcome.success, "\n".join(outcome.summary_lines)
        reference = ReferenceLake(Path(settings.lake_uri))
        expected = {i: reference.members(s["segment_type"], T, s["params"]) for i, s in created.items()}
        yield client, reader, created, expected, reference


def test_the_reference_gives_segments_of_every_shape(pipeline) -> None:
    _, _, _, expected, _ = pipeline
    sizes = sorted(len(m) for m in expected.values())
    assert sizes[0] > 0 and sizes[-1] > 3 * CHUNK, sizes  # otherwise the chunk crossings below prove nothing


def test_batch_lookups_match_the_reference_for_every_customer(pipeline) -> None:
    client, headers, created, expected, reference = pipeline
    customers = sorted({c["customer_id"] for c in reference.customers}) + ["nobody"]
    for start in range(0, len(customers), 1000):
        batch = customers[start : start + 1000]
        response = client.post("/v1/customers/segments:batch", json={"customer_ids": batch}, headers=headers)
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert sorted(results) == sorted(batch)
        for customer_id in batch:
            want = sorted(i for i, members in expected.items() if customer_id in members)
            assert [s["segment_id"] for s in results[customer_id]] == want, customer_id
            for segment in results[customer_id]:
                assert segment["segment_type"] == created[segment["segment_id"]]["segment_type"]
                assert segment["name"] == created[segment["segment_id"]]["name"]


def test_single_lookups_and_membership_agree_with_the_reference(pipeline) -> None:
    client, headers, _, expected, reference = pipeline
    for customer_id in sorted(c["customer_id"] for c in reference.customers)[::25]:
        segments = client.get(f"/v1/customers/{customer_id}/segments", headers=headers).json()["segments"]
        assert [s["segment_id"] for s in segments] == sorted(i for i, m in expected.items() if customer_id in m)
        for segment_id, members in expected.items():
            body = client.get(f"/v1/segments/{segment_id}/members/{customer_id}", headers=headers).json()
            assert body["member"] is (customer_id in members), (segment_id, customer_id)


def test_exports_and_stats_match_the_reference_across_chunk_documents(pipeline) -> None:
    client, headers, _, expected, _ = pipeline
    for segment_id, members in expected.items():
        stats = client.get(f"/v1/segments/{segment_id}/stats", headers=headers).json()
        assert stats["member_count"] == len(members)
        exported: list[str] = []
        cursor = None
        while True:
            params = {"limit": 33, **({"cursor": cursor} if cursor else {})}
            page = client.get(f"/v1/segments/{segment_id}/members", params=params, headers=headers).json()
            exported += page["customer_ids"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(exported) == len(set(exported)), "an export repeated a member"
        assert set(exported) == members
        assert exported == sorted(exported)  # chunks hold consecutive slices of the sorted ids
