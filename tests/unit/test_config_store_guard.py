"""The config store's breaker: one unreachable PostgreSQL opens it, and the calls that follow fail at
once instead of each waiting out a connect timeout (resources/config_store/guard.py)."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy.exc import OperationalError

from resources.config_store.guard import ConfigStoreGuard, ConfigStoreUnavailable
from resources.config_store.segments import SegmentNotFound


class Database:
    def __init__(self) -> None:
        self.calls = 0
        self.failure: Exception | None = None

    def query(self, delay: float = 0.0) -> str:
        self.calls += 1
        time.sleep(delay)
        if self.failure is not None:
            raise self.failure
        return "rows"


def test_an_unreachable_database_opens_the_breaker_and_later_calls_fail_at_once() -> None:
    database = Database()

    async def scenario() -> None:
        guard = ConfigStoreGuard(open_seconds=0.3)
        assert await guard.run(database.query) == "rows"
        database.failure = OperationalError("connect", {}, Exception("timeout expired"))
        with pytest.raises(ConfigStoreUnavailable):
            await guard.run(database.query, delay=0.2)  # the one call that waits out the timeout
        started = time.monotonic()
        with pytest.raises(ConfigStoreUnavailable) as refused:
            await guard.run(database.query, delay=0.2)
        assert time.monotonic() - started < 0.05 and database.calls == 2
        assert refused.value.retry_after_seconds >= 1
        database.failure = None
        await asyncio.sleep(0.35)  # the breaker lets a trial through, which succeeds and closes it
        assert await guard.run(database.query) == "rows"
        assert await guard.run(database.query) == "rows"

    asyncio.run(scenario())


def test_answers_of_a_healthy_database_never_open_the_breaker() -> None:
    database = Database()
    database.failure = SegmentNotFound("s_missing")

    async def scenario() -> None:
        guard = ConfigStoreGuard(open_seconds=60)
        for _ in range(3):
            with pytest.raises(SegmentNotFound):
                await guard.run(database.query)
        assert database.calls == 3

    asyncio.run(scenario())
