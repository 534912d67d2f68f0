"""SQLAlchemy tables of the config store. Alembic migrations under `migrations/` create them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SEGMENT_STATUSES = ("active", "paused", "archived")
AUDIT_ACTIONS = ("create", "update", "archive")
API_KEY_SCOPES = ("read", "admin")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    pass


class SegmentRow(Base):
    __tablename__ = "segments"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    segment_type: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSONB)
    labels: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict)
    # Targeting attributes, derived from params so that lookups and listings can filter on them.
    store_id: Mapped[str | None] = mapped_column(String(128))
    category: Mapped[str | None] = mapped_column(String(128))
    city: Mapped[str | None] = mapped_column(String(128))
    country: Mapped[str | None] = mapped_column(String(2))
    status: Mapped[str] = mapped_column(String(16))
    # Bumped by every change: the ETag of the API, and the compare-and-set key of updates.
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    created_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_by: Mapped[str] = mapped_column(String(200))

    __table_args__ = (
        Index("ix_segments_type_status", "segment_type", "status"),
        # `labels @> '{"team": "x"}'` in listings.
        Index("ix_segments_labels", "labels", postgresql_using="gin", postgresql_ops={"labels": "jsonb_path_ops"}),
        CheckConstraint(_one_of("status", SEGMENT_STATUSES), name="ck_segments_status"),
        CheckConstraint("version >= 1", name="ck_segments_version"),
    )


class SegmentAuditRow(Base):
    """Append-only (a trigger refuses UPDATE and DELETE): one row per create, update and archive."""

    __tablename__ = "segment_audit"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    segment_id: Mapped[str] = mapped_column(ForeignKey("segments.id"))
    version: Mapped[int] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(16))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        # Every version of a segment has exactly one audit entry; also the index of the audit listing.
        UniqueConstraint("segment_id", "version", name="uq_segment_audit_segment_version"),
        CheckConstraint(_one_of("action", AUDIT_ACTIONS), name="ck_segment_audit_action"),
    )


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    scope: Mapped[str] = mapped_column(String(16))
    # SHA-256 of the whole token; the token has 256 bits of entropy, so no slow hash is needed.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Written in the background, at most once a minute per key and API process (see ApiKeyUsage).
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (CheckConstraint(_one_of("scope", API_KEY_SCOPES), name="ck_api_keys_scope"),)
