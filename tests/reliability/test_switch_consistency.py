"""Answers that combine two reads stay within one calculation across an alias switch.

Between a switch and an API process's next read of the generation (up to
`lookup_generation_refresh_seconds`), its cache still holds the previous calculation while
Elasticsearch already answers the new one. Found by the sustained-load test: a membership check
took "not a member" from the new calculation and `calculated_at` from the previous one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from resources.settings import Settings
from tests.integration.publishing import failure_text
from tests.reliability.answers import Calculation
from tests.reliability.platform import make_keys, run_ingestion

pytestmark = pytest.mark.integration


def test_a_membership_check_across_a_switch_answers_from_one_calculation(settings: Settings, tmp_path: Path) -> None:
    before = Calculation.write(settings, "2026-11-20", {"seg-x": ["c1", "c2"]})
    assert run_ingestion(settings, before.partition_key).success
    keys = make_keys(settings, "switch")
    # The process reads the generation once and keeps it: the window after a switch, held open.
    held = settings.model_copy(update={"lookup_generation_refresh_seconds": 60.0, "state_dir": tmp_path})
    with TestClient(create_app(held)) as api:
        warm = api.get("/v1/segments/seg-x/stats", headers=keys.as_reader)  # the summary, cached
        assert warm.json()["calculated_at"] == before.calculated_at

        after = Calculation.write(settings, "2026-11-21", {"seg-x": ["c2"]})  # c1 leaves the segment
        published = run_ingestion(settings, after.partition_key)
        assert published.success, failure_text(published)

        body = api.get("/v1/segments/seg-x/members/c1", headers=keys.as_reader).json()

    answer = (body["member"], body["calculated_at"])
    assert answer in (before.membership("seg-x", "c1"), after.membership("seg-x", "c1")), answer
