"""Test namespaces on the shared services: per test module, a PostgreSQL schema `test_<run>`, the
index prefix `test-<run>` and Redis keys under `test-<run>:`.

The session that made a namespace removes it when it ends. A session that never got there (killed,
interrupted) leaves its namespaces behind; the next session removes those once they are older than
any session lasts. A namespace's age is its schema's comment, so sessions running side by side
never remove each other's. Namespaces made before they carried their age (no comment) count as
left behind.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import redis
from elasticsearch import Elasticsearch
from sqlalchemy import text
from sqlalchemy.engine import Engine

# Longer than any test session: CI gives the whole job, installs included, 90 minutes.
STALE_AFTER = timedelta(hours=3)
_CREATED = "segmentation test namespace, created "
_RUN_SCHEMA = re.compile(r"test_([0-9a-f]{8})")


def schema_name(run: str) -> str:
    return f"test_{run}"


def index_prefix(run: str) -> str:
    return f"test-{run}"


def create(admin_engine: Engine, run: str, *, now: datetime | None = None) -> None:
    created = (now or datetime.now(timezone.utc)).isoformat()
    with admin_engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema_name(run)}"'))
        connection.execute(text(f"COMMENT ON SCHEMA \"{schema_name(run)}\" IS '{_CREATED}{created}'"))


def remove(admin_engine: Engine, es: Elasticsearch, client: redis.Redis, run: str) -> None:
    # 404: another session removing the same stale namespace deleted the indices first
    es.options(ignore_status=404).indices.delete(index=f"{index_prefix(run)}-*", allow_no_indices=True, expand_wildcards="all")
    # SCAN's default count (10) walks a Redis full of other keys (a developer's benchmarks leave
    # millions) in one round trip per 10 of them: minutes per namespace.
    keys = list(client.scan_iter(f"{index_prefix(run)}:*", count=10_000))
    for start in range(0, len(keys), 10_000):
        client.unlink(*keys[start : start + 10_000])
    with admin_engine.begin() as connection:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema_name(run)}" CASCADE'))


def stale_runs(admin_engine: Engine, *, now: datetime | None = None) -> list[str]:
    """The namespaces made more than `STALE_AFTER` ago, or before they carried their age. Schemas
    that other tests make for themselves (`test_migrations_...`) are not namespaces."""
    cutoff = (now or datetime.now(timezone.utc)) - STALE_AFTER
    with admin_engine.connect() as connection:
        schemas = connection.execute(
            text("SELECT nspname, obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname LIKE 'test\\_%'")
        ).all()
    runs = []
    for schema, comment in schemas:
        if (run := _RUN_SCHEMA.fullmatch(schema)) is None:
            continue
        if comment is None or datetime.fromisoformat(comment.removeprefix(_CREATED)) < cutoff:
            runs.append(run.group(1))
    return runs
