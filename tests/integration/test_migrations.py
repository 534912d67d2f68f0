"""The config store's migrations on real PostgreSQL: from empty to head, and from 0001 with rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError

from resources.config_store.database import (
    alembic_config,
    session_factory,
    upgrade_schema,
)
from resources.config_store.models import Base
from resources.config_store.segments import SegmentRepository
from resources.settings import Settings

pytestmark = pytest.mark.integration

TABLES = {"segments": "id", "segment_audit": "id", "api_keys": "id"}


@pytest.fixture
def empty_database(services: Settings) -> Iterator[str]:
    """A URL whose search_path is a new, empty schema, dropped afterwards."""
    schema = f"test_migrations_{uuid.uuid4().hex[:8]}"
    admin = create_engine(services.database_url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(services.database_url).update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def engine(empty_database: str) -> Iterator[Engine]:
    engine = create_engine(empty_database)
    yield engine
    engine.dispose()


def _head(database_url: str) -> str:
    return ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()


def _revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _all_rows(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    with engine.connect() as connection:
        return {
            table: [dict(r._mapping) for r in connection.execute(text(f"SELECT * FROM {table} ORDER BY {key}"))]
            for table, key in TABLES.items()
        }


def test_upgrade_from_empty_reaches_head_and_matches_the_models(empty_database: str, engine: Engine) -> None:
    assert _revision(engine) is None
    upgrade_schema(empty_database)
    assert _revision(engine) == _head(empty_database)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []
    upgrade_schema(empty_database)  # idempotent
    assert _revision(engine) == _head(empty_database)


def _fill_at_0001(engine: Engine) -> None:
    """Rows as the 0001 code wrote them: two segments, their audit, two keys."""
    snapshot = '{"name": "%s", "version": %d, "status": "%s"}'
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO segments (id, name, description, segment_type, params, labels, city, status, version, "
                "created_by, updated_by) VALUES "
                "('seg_a', 'Madrid', 'd', 'new_customers', '{\"max_days_since_signup\": 30, \"city\": \"Madrid\"}', "
                "'{\"team\": \"growth\"}', 'Madrid', 'active', 2, 'admin-1', 'admin-2'), "
                "('seg_b', 'Old', NULL, 'new_customers', '{\"max_days_since_signup\": 7}', '{}', NULL, 'archived', 2, "
                "'admin-1', 'admin-1')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO segment_audit (segment_id, version, actor, action, before, after) VALUES "
                f"('seg_a', 1, 'admin-1', 'create', NULL, '{snapshot % ('Madrid', 1, 'active')}'), "
                f"('seg_a', 2, 'admin-2', 'update', '{snapshot % ('Madrid', 1, 'active')}', "
                f"'{snapshot % ('Madrid', 2, 'active')}'), "
                f"('seg_b', 1, 'admin-1', 'create', NULL, '{snapshot % ('Old', 1, 'active')}'), "
                f"('seg_b', 2, 'admin-1', 'archive', '{snapshot % ('Old', 1, 'active')}', "
                f"'{snapshot % ('Old', 2, 'archived')}')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO api_keys (name, scope, key_hash, revoked_at, last_used_at) VALUES "
                f"('admin-1', 'admin', '{'a' * 64}', NULL, now()), ('reader', 'read', '{'b' * 64}', now(), NULL)"
            )
        )


def test_upgrade_from_0001_keeps_every_row(empty_database: str, engine: Engine) -> None:
    upgrade_schema(empty_database, "0001")
    assert _revision(engine) == "0001"
    _fill_at_0001(engine)
    before = _all_rows(engine)
    assert [len(rows) for rows in before.values()] == [2, 4, 2]

    upgrade_schema(empty_database)

    assert _revision(engine) == _head(empty_database)
    assert _all_rows(engine) == before
    # The migrated rows are served and changed by today's code, which continues their history.
    segments = SegmentRepository(session_factory(empty_database))
    assert segments.archived_ids() == {"seg_b"}
    updated = segments.update("seg_a", expected_version=2, changes={"name": "Madrid, renamed"}, actor="admin-1")
    assert updated.version == 3
    assert [(e.version, e.action) for e in segments.audit("seg_a")] == [(1, "create"), (2, "update"), (3, "update")]


def test_head_refuses_what_0001_allowed(empty_database: str, engine: Engine) -> None:
    upgrade_schema(empty_database, "0001")
    _fill_at_0001(engine)
    upgrade_schema(empty_database)
    refused = [
        "UPDATE segment_audit SET actor = 'someone else'",
        "DELETE FROM segment_audit",
        "TRUNCATE segment_audit",
        "INSERT INTO segment_audit (segment_id, version, actor, action) VALUES ('seg_a', 2, 'x', 'update')",
        "UPDATE segments SET status = 'deleted' WHERE id = 'seg_a'",
        "UPDATE segments SET version = 0 WHERE id = 'seg_a'",
        "UPDATE api_keys SET scope = 'root'",
    ]
    for statement in refused:
        with pytest.raises((IntegrityError, DBAPIError)), engine.begin() as connection:
            connection.execute(text(statement))
    assert len(_all_rows(engine)["segment_audit"]) == 4


def test_downgrade_to_0001_and_back_keeps_every_row(empty_database: str, engine: Engine) -> None:
    from alembic import command

    upgrade_schema(empty_database, "0001")
    _fill_at_0001(engine)
    upgrade_schema(empty_database)
    before = _all_rows(engine)
    command.downgrade(alembic_config(empty_database), "0001")
    assert _revision(engine) == "0001"
    assert _all_rows(engine) == before
    upgrade_schema(empty_database)
    assert _all_rows(engine) == before
