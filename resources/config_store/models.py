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
    text,
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


class SegmentCalculationRow(Base):
    """One segment in one calculation (a run's computation of one partition of its type)."""

    __tablename__ = "segment_calculations"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    segment_id: Mapped[str] = mapped_column(ForeignKey("segments.id"))
    segment_type: Mapped[str] = mapped_column(String(64))
    partition_key: Mapped[str] = mapped_column(String(32))
    run_id: Mapped[str] = mapped_column(String(64))
    config_version: Mapped[int] = mapped_column(Integer)
    calculated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    member_count: Mapped[int] = mapped_column(BigInteger)
    # Against the segment's calculation of the latest earlier partition; null when its results are gone.
    entered: Mapped[int | None] = mapped_column(BigInteger)
    exited: Mapped[int | None] = mapped_column(BigInteger)
    # The Elasticsearch index that holds this calculation; null until (unless) it is ingested.
    index: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (
        UniqueConstraint("segment_id", "partition_key", "run_id", name="uq_segment_calculations_run"),
        CheckConstraint("member_count >= 0", name="ck_segment_calculations_member_count"),
        Index(
            "ix_segment_calculations_segment_partition",
            "segment_id",
            text("partition_key DESC"),
            text("calculated_at DESC"),
        ),
        Index("ix_segment_calculations_type_partition", "segment_type", "partition_key", "run_id"),
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


class AlertRow(Base):
    """An alert for the engineers, kept until a webhook accepted it or delivery gave up: an outbox,
    so that whatever raises an alert only writes a row and never waits on the webhook."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    # The event it is about (`run_failure:<run id>`, `check_failure:<event storage id>`): one alert each.
    dedup_key: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(300))
    message: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    given_up_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("dedup_key", name="uq_alerts_dedup_key"),
        CheckConstraint("attempts >= 0", name="ck_alerts_attempts"),
        # The deliverer's question, which stays cheap however many delivered alerts pile up.
        Index(
            "ix_alerts_due", "next_attempt_at", postgresql_where=text("delivered_at IS NULL AND given_up_at IS NULL")
        ),
    )


PREVIEW_STATUSES = ("queued", "running", "done", "failed")


class PreviewRow(Base):
    """A segment type and params counted on one partition by a Dagster run, creating no segment (SPEC 7)."""

    __tablename__ = "previews"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    segment_type: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSONB)
    partition_key: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    # Set when done: the exact count, and up to 20 members (the smallest customer ids).
    member_count: Mapped[int | None] = mapped_column(BigInteger)
    sample_customer_ids: Mapped[list[str] | None] = mapped_column(JSONB)
    # Set when failed: why.
    error: Mapped[str | None] = mapped_column(Text)
    # The name of the API key that asked.
    requested_by: Mapped[str] = mapped_column(String(200))
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # The run key under which the preview sensor requested a run for it, so that it is requested once.
    claim: Mapped[str | None] = mapped_column(String(128))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The Dagster run that computes (computed) it.
    run_id: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        CheckConstraint(_one_of("status", PREVIEW_STATUSES), name="ck_previews_status"),
        CheckConstraint("member_count >= 0", name="ck_previews_member_count"),
        Index("ix_previews_queue", "status", "requested_at"),
    )


class ConsoleSessionRow(Base):
    """A sign-in to the console: the API key it was made with, found by the SHA-256 of its cookie's
    token (the token is never stored). Deleted at sign-out; useless once its key is revoked."""

    __tablename__ = "console_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # A form sent after the previous session expired, kept through the sign-in to be shown again.
    kept_input: Mapped[dict[str, Any] | None] = mapped_column(JSONB)

    __table_args__ = (Index("ix_console_sessions_last_seen_at", "last_seen_at"),)


class ConsoleSubmissionRow(Base):
    """A console create form's one-time token: its first submission claims it, so that a form sent
    twice creates one segment (the second answers with the first one's)."""

    __tablename__ = "console_submissions"

    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Null while the first submission is being saved.
    segment_id: Mapped[str | None] = mapped_column(ForeignKey("segments.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_console_submissions_created_at", "created_at"),)
