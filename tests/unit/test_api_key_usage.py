"""Key usage is remembered in memory and written in batches: one row update per key per flush."""

from __future__ import annotations

from datetime import datetime

import pytest

from resources.config_store.api_keys import ApiKey, ApiKeyUsage


class RecordingRepository:
    def __init__(self, fail: bool = False) -> None:
        self.writes: list[dict[str, datetime]] = []
        self.fail = fail

    def record_usage(self, last_used: dict[str, datetime]) -> None:
        if self.fail:
            raise ConnectionError("PostgreSQL is down")
        self.writes.append(dict(last_used))


def test_many_uses_between_flushes_are_one_write_per_key_with_the_latest_time() -> None:
    usage = ApiKeyUsage()
    repository = RecordingRepository()
    for _ in range(1000):
        usage.seen(ApiKey("growth", "admin"))
    usage.seen(ApiKey("reader", "read"))
    last_growth_use = datetime.now().astimezone()
    usage.seen(ApiKey("growth", "admin"))

    assert usage.flush(repository) == 2
    (written,) = repository.writes
    assert set(written) == {"growth", "reader"}
    assert written["reader"] <= written["growth"]
    assert abs((written["growth"] - last_growth_use).total_seconds()) < 5
    assert usage.flush(repository) == 0  # nothing new: nothing written
    assert len(repository.writes) == 1


def test_a_failed_flush_keeps_the_times_for_the_next_one() -> None:
    usage = ApiKeyUsage()
    usage.seen(ApiKey("growth", "admin"))
    with pytest.raises(ConnectionError):
        usage.flush(RecordingRepository(fail=True))
    repository = RecordingRepository()
    assert usage.flush(repository) == 1
    assert list(repository.writes[0]) == ["growth"]
