"""The Dagster resources' clients: one per resource for a whole run, closed when the run ends."""

from __future__ import annotations

from typing import Any

import dagster as dg
import pytest
import redis

from resources.settings import Settings
from segmentation_assets.dagster_resources import ElasticsearchResource, RedisResource

pytestmark = pytest.mark.integration


def test_one_client_per_run_and_the_redis_one_closed_at_its_end(settings: Settings) -> None:
    held: dict[str, Any] = {}

    @dg.asset
    def uses_both(search: ElasticsearchResource, cache: RedisResource) -> None:
        held["redis"] = client = cache.client()
        held["redis_same"] = client is cache.client()
        held["redis_id"] = client.client_id()
        held["search_same"] = search.client() is search.client() and search.writer().client is search.client()
        search.client().cluster.health()

    result = dg.materialize(
        [uses_both],
        resources={
            "search": ElasticsearchResource(url=settings.elasticsearch_url, index_prefix=settings.index_prefix),
            "cache": RedisResource(url=settings.redis_url),
        },
    )

    assert result.success
    assert held["redis_same"] and held["search_same"]
    # Still referenced here, yet its connection is gone: closed by the teardown, not by the collector.
    assert held["redis"] is not None
    with redis.Redis.from_url(settings.redis_url) as probe:
        assert probe.execute_command("CLIENT", "LIST", "ID", held["redis_id"]) in (b"", "")
