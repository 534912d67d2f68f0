"""What a session removes before it starts: namespaces an interrupted session left, never a live one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
import redis
from elasticsearch import Elasticsearch
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from resources.settings import Settings
from tests import namespaces

pytestmark = pytest.mark.integration


@pytest.fixture
def clients(services: Settings) -> Iterator[tuple[Engine, Elasticsearch, redis.Redis]]:
    engine = create_engine(services.database_url)
    es = Elasticsearch(services.elasticsearch_url)
    client = redis.Redis.from_url(services.redis_url)
    yield engine, es, client
    engine.dispose()


def _make(engine: Engine, es: Elasticsearch, client: redis.Redis, *, created: datetime) -> str:
    run = uuid.uuid4().hex[:8]
    namespaces.create(engine, run, now=created)
    es.indices.create(index=f"{namespaces.index_prefix(run)}-frequent_buyers-2026-11-01-abc")
    client.set(f"{namespaces.index_prefix(run)}:generation", 1)
    return run


def _exists(engine: Engine, es: Elasticsearch, client: redis.Redis, run: str) -> tuple[bool, bool, bool]:
    with engine.connect() as connection:
        schema = connection.execute(
            text("SELECT count(*) FROM pg_namespace WHERE nspname = :name"), {"name": namespaces.schema_name(run)}
        ).scalar_one()
    indices = es.indices.get(index=f"{namespaces.index_prefix(run)}-*", allow_no_indices=True, expand_wildcards="all")
    return schema == 1, bool(indices), client.exists(f"{namespaces.index_prefix(run)}:generation") == 1


def test_only_namespaces_older_than_any_session_are_stale_and_removing_one_leaves_nothing(
    clients: tuple[Engine, Elasticsearch, redis.Redis],
) -> None:
    engine, es, client = clients
    # Judged from a time to come, rather than made in the past: a namespace already stale now
    # would be fair game for the cleanup of any test session starting meanwhile.
    now = datetime.now(timezone.utc)
    later = now + namespaces.STALE_AFTER + namespaces.STALE_AFTER / 10
    left_behind = _make(engine, es, client, created=now)
    running = _make(engine, es, client, created=now + namespaces.STALE_AFTER * 0.2)
    try:
        stale = namespaces.stale_runs(engine, now=later)
        assert left_behind in stale
        assert running not in stale

        namespaces.remove(engine, es, client, left_behind)
        assert _exists(engine, es, client, left_behind) == (False, False, False)
        assert _exists(engine, es, client, running) == (True, True, True)
    finally:
        for run in (left_behind, running):
            namespaces.remove(engine, es, client, run)


def test_namespaces_made_before_they_carried_their_age_are_stale_and_other_tests_schemas_are_not(
    clients: tuple[Engine, Elasticsearch, redis.Redis],
) -> None:
    engine, _, _ = clients
    legacy_run = uuid.uuid4().hex[:8]
    schemas = [namespaces.schema_name(legacy_run), f"test_migrations_{uuid.uuid4().hex[:8]}"]
    with engine.begin() as connection:
        for schema in schemas:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        stale = namespaces.stale_runs(engine)
        assert legacy_run in stale
        assert not [run for run in stale if run.startswith("migrations")]
    finally:
        with engine.begin() as connection:
            for schema in schemas:
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
