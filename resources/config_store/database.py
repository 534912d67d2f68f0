"""Engine creation and schema migration of the config store."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def normalized_url(database_url: str) -> str:
    """SQLAlchemy 2.0 treats plain postgresql:// as psycopg2 already; keep any explicit driver."""
    if database_url.startswith("postgres://"):
        return "postgresql+psycopg2://" + database_url.removeprefix("postgres://")
    return database_url


# A PostgreSQL that accepts connections and never answers must cost a bounded wait (then 503), not
# a hang: libpq's connect timeout, and the pool's wait for a free connection.
CONNECT_TIMEOUT_SECONDS = 3
POOL_TIMEOUT_SECONDS = 5


@lru_cache(maxsize=8)
def engine_for(database_url: str) -> Engine:
    return create_engine(
        normalized_url(database_url),
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=10,
        pool_timeout=POOL_TIMEOUT_SECONDS,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
    )


def session_factory(database_url: str) -> sessionmaker[Session]:
    return sessionmaker(engine_for(database_url), expire_on_commit=False)


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", normalized_url(database_url).replace("%", "%%"))
    return config


def upgrade_schema(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)
