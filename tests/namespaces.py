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

from elasticsearch import Elasticsearch
from sqlalchemy import text
from sqlalchemy.engine import Engine

from resources.redis_clients import SyncRedis
from tests.redis_servers import SCAN_COUNT, unlink_matching

# Longer than any test session: CI gives the whole job, installs included, 90 minutes.
STALE_AFTER = timedelta(hours=3)
_CREATED = "segmentation test namespace, created "
_RUN_SCHEMA = re.compile(r"test_([0-9a-f]{8})")
_RUN_KEY = re.compile(r"test-([0-9a-f]{8}):")


def schema_name(run: str) -> str:
    return f"test_{run}"


def index_prefix(run: str) -> str:
    return f"test-{run}"


def run_of(prefix: str) -> str:
    """The run whose namespace has this index prefix."""
    return prefix.removeprefix("test-")


def create(admin_engine: Engine, run: str, *, now: datetime | None = None) -> None:
    created = (now or datetime.now(timezone.utc)).isoformat()
    with admin_engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema_name(run)}"'))
        connection.execute(text(f"COMMENT ON SCHEMA \"{schema_name(run)}\" IS '{_CREATED}{created}'"))


def remove_keys(client: SyncRedis, run: str) -> int:
    """The namespace's Redis keys (a plain Redis or a cluster); answers how many."""
    return unlink_matching(client, f"{index_prefix(run)}:*")


def remove(admin_engine: Engine, es: Elasticsearch, client: SyncRedis, run: str) -> None:
    # 404: another session removing the same stale namespace deleted the indices first
    es.options(ignore_status=404).indices.delete(index=f"{index_prefix(run)}-*", allow_no_indices=True, expand_wildcards="all")
    remove_keys(client, run)
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


def runs_with_keys_only(admin_engine: Engine, client: SyncRedis) -> list[str]:
    """The namespaces that left keys in this Redis and no schema any more: a session that used
    this Redis (the tests' Redis Cluster) besides the shared one, and was killed before it removed
    them. Their schemas went with the shared servers' leftovers."""
    runs = {m.group(1) for key in client.scan_iter("test-*", count=SCAN_COUNT) if (m := _RUN_KEY.match(key.decode()))}
    if not runs:
        return []
    with admin_engine.connect() as connection:
        schemas = {row[0] for row in connection.execute(text("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'test\\_%'"))}
    return sorted(run for run in runs if schema_name(run) not in schemas)
