"""The search guard's verdict on an answer that some shards failed: not served, and counted."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import REGISTRY

from resources.serving.search_guard import SearchGuard, SearchUnavailable, breaker_factory


def answer(failed_shards: int) -> Any:
    shards = {"total": 4, "successful": 4 - failed_shards, "skipped": 0, "failed": failed_shards}
    return SimpleNamespace(body={"_shards": shards, "hits": {"hits": [{"_index": "i", "fields": {"segment_id": ["s"]}}]}})


def partial_count() -> float:
    labels = {"operation": "customer_segments", "outcome": "partial"}
    return REGISTRY.get_sample_value("segmentation_elasticsearch_request_duration_seconds_count", labels) or 0.0


async def search(guard: SearchGuard, result: Any) -> Any:
    async def call() -> Any:
        return result

    return await guard.run("customer_segments", call)


def test_an_answer_with_failed_shards_is_unavailable_and_counts_towards_the_breaker() -> None:
    async def scenario() -> None:
        guard = SearchGuard(breaker_factory(failures=2, open_seconds=30), budget_seconds=1, open_seconds=30)
        whole = answer(0)
        assert await search(guard, whole) is whole
        before = partial_count()
        with pytest.raises(SearchUnavailable, match="part of the index only"):
            await search(guard, answer(1))
        assert partial_count() == before + 1
        with pytest.raises(SearchUnavailable):
            await search(guard, answer(2))
        # Two failures open the breaker: even a whole answer is not asked for now.
        with pytest.raises(SearchUnavailable, match="circuit open"):
            await search(guard, whole)

    asyncio.run(scenario())
