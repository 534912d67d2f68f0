"""A minute of sustained load on `segmentation api` while a calculation is published, the alias
rolled back and another calculation published: zero errors, zero wrong answers; p50 and p99 are
printed at the end of the run. `bench/soak.py --seconds 600` runs the same for longer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from resources.settings import Settings
from tests.reliability import run_report, sustained_load
from tests.reliability.platform import make_keys

pytestmark = pytest.mark.integration

SECONDS = float(os.environ.get("SEGMENTATION_LOAD_SECONDS", "60"))


def test_sustained_load_through_ingestions_and_a_rollback(settings: Settings, tmp_path: Path) -> None:
    keys = make_keys(settings, "load")
    # A budget for Elasticsearch that a busy 2-core machine keeps under load; the 250 ms default
    # is what bench/soak.py measures against.
    served = settings.model_copy(update={"api_search_budget_seconds": 1.0, "state_dir": tmp_path / "state"})

    report = sustained_load.run(
        served,
        keys.as_reader,
        seconds=SECONDS,
        switch_every=SECONDS / 3,
        population=20_000,
        concurrency=16,
        workers=1,
        log_dir=tmp_path,
    )

    run_report.record_line(report.line())
    assert len(report.switches) == 3 and report.switches[1].startswith("rollback to 2026-11-01")
    assert report.requests > 30 * SECONDS  # it was load
    assert report.errors == 0, report.examples
    assert report.wrong == 0, report.examples
    assert report.checked_answers >= report.requests
