"""Segment configs: the repository over PostgreSQL, and the audit trail it keeps.

Every change bumps `version` with a compare-and-set (`UPDATE ... WHERE id = ? AND version = ?`) and
appends its audit entry in the same transaction, so two writers of one version cannot both win.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from resources.config_store.models import SegmentAuditRow, SegmentRow
from resources.targeting import TARGETING_ATTRIBUTES, TargetingAttributes, VisibleLine

SegmentStatus = Literal["active", "paused", "archived"]
AuditAction = Literal["create", "update", "archive"]
LabelKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]
# Any label value ever stored, so what label filters take; a new one must also be visible, but one
# stored before that rule is still found by a filter.
LabelValue = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f]*$")]
Labels = Annotated[dict[LabelKey, Annotated[LabelValue, VisibleLine]], Field(max_length=32)]

# What an update may set; `segment_type` is fixed at creation.
CHANGEABLE_FIELDS = frozenset({"name", "description", "params", "labels", "status", *TARGETING_ATTRIBUTES})


class Segment(TargetingAttributes):
    """A stored segment; its targeting attributes are derived from its params when it is written."""

    model_config = ConfigDict(from_attributes=True, frozen=False, extra="ignore")

    id: str
    name: str
    description: str | None
    segment_type: str
    params: dict[str, Any]
    labels: dict[str, str]
    status: SegmentStatus
    version: int
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str

    def audit_snapshot(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"created_at", "updated_at"})


class AuditEntry(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: datetime
    actor: str
    action: AuditAction
    version: int
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@dataclass(frozen=True)
class SegmentFilters:
    """Listing filters; all given ones must match. No statuses means every status."""

    segment_type: str | None = None
    statuses: tuple[SegmentStatus, ...] = ()
    attributes: dict[str, str] = field(default_factory=dict)  # the targeting attributes given; all must equal
    labels: tuple[tuple[str, str], ...] = ()  # key:value pairs, all of which must hold


@dataclass(frozen=True)
class ConfigChange:
    """One audit entry, with its segment as it is now: what the next calculation would read."""

    audit_id: int
    segment_id: str
    segment_type: str
    action: AuditAction
    status: SegmentStatus
    version: int
    params: Any  # as stored: not validated, so possibly not even an object


@dataclass(frozen=True)
class ConfigChanges:
    """What `SegmentRepository.changes_since` read, in one snapshot."""

    counters: dict[str, int]  # per segment type: its rows plus the sum of their versions
    last_audit_id: int  # the highest audit id visible (0: none)
    changes: list[ConfigChange]  # the audit entries after the id asked for, oldest first


class SegmentNotFound(LookupError):
    pass


class StaleVersion(Exception):
    def __init__(self, current: Segment) -> None:
        super().__init__(f"the segment is at version {current.version}")
        self.current = current


class SegmentArchived(Exception):
    def __init__(self, current: Segment) -> None:
        super().__init__(f"segment {current.id!r} is archived")
        self.current = current


def new_segment_id() -> str:
    return f"seg_{secrets.token_hex(8)}"


class SegmentRepository:
    """Every write also appends its audit row, in the same transaction."""

    # An archive without an expected version retries when a concurrent update wins the race.
    ARCHIVE_ATTEMPTS = 5

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def create(
        self,
        *,
        name: str,
        segment_type: str,
        params: dict[str, Any],
        targeting: dict[str, str | None],
        labels: dict[str, str],
        description: str | None,
        status: SegmentStatus,
        actor: str,
    ) -> Segment:
        with self._sessions.begin() as session:
            row = SegmentRow(
                id=new_segment_id(),
                name=name,
                description=description,
                segment_type=segment_type,
                params=params,
                labels=labels,
                status=status,
                version=1,
                created_by=actor,
                updated_by=actor,
                **targeting,
            )
            session.add(row)
            session.flush()
            session.refresh(row)
            segment = Segment.model_validate(row)
            _append_audit(session, "create", actor, before=None, after=segment)
            return segment

    def get(self, segment_id: str) -> Segment:
        with self._sessions() as session:
            return _current(session, segment_id)

    def update(self, segment_id: str, *, expected_version: int, changes: dict[str, Any], actor: str) -> Segment:
        """Applies `changes` if the segment is still at `expected_version`; a change to nothing
        is no new version. Raises SegmentNotFound, SegmentArchived or StaleVersion."""
        unknown = set(changes) - CHANGEABLE_FIELDS
        if unknown:
            raise ValueError(f"not changeable: {sorted(unknown)}")
        with self._sessions.begin() as session:
            current = _current(session, segment_id)
            if current.status == "archived":
                raise SegmentArchived(current)
            if current.version != expected_version:
                raise StaleVersion(current)
            if all(getattr(current, name) == value for name, value in changes.items()):
                return current
            written = _compare_and_set(session, current, changes, actor, "update")
            if written is None:  # a concurrent writer committed this version first
                _raise_conflict(session, segment_id)
            return written

    def archive(self, segment_id: str, *, actor: str, expected_version: int | None = None) -> Segment:
        """Archives the segment; archiving an archived segment changes nothing and returns it.
        With `expected_version`, a segment at another version is `StaleVersion`, archived or not."""
        for _ in range(self.ARCHIVE_ATTEMPTS):
            with self._sessions.begin() as session:
                current = _current(session, segment_id)
                if expected_version is not None and current.version != expected_version:
                    raise StaleVersion(current)
                if current.status == "archived":
                    return current
                written = _compare_and_set(session, current, {"status": "archived"}, actor, "archive")
                if written is not None:
                    return written
        raise StaleVersion(self.get(segment_id))

    def list(self, filters: SegmentFilters, *, after_id: str | None, limit: int) -> tuple[list[Segment], bool]:
        """One page in id order, after `after_id` (keyset paging); the flag says whether more follow."""
        query = select(SegmentRow).order_by(SegmentRow.id).limit(limit + 1)
        if after_id is not None:
            query = query.where(SegmentRow.id > after_id)
        if filters.segment_type is not None:
            query = query.where(SegmentRow.segment_type == filters.segment_type)
        if filters.statuses:
            query = query.where(SegmentRow.status.in_(filters.statuses))
        for name, value in filters.attributes.items():
            query = query.where(getattr(SegmentRow, name) == value)
        for key, value in filters.labels:
            query = query.where(SegmentRow.labels.contains({key: value}))
        with self._sessions() as session:
            segments = [Segment.model_validate(r) for r in session.scalars(query)]
        return segments[:limit], len(segments) > limit

    def audit(self, segment_id: str) -> list[AuditEntry]:
        """Every change of the segment, oldest first."""
        with self._sessions() as session:
            _current(session, segment_id)
            rows = session.scalars(
                select(SegmentAuditRow).where(SegmentAuditRow.segment_id == segment_id).order_by(SegmentAuditRow.id)
            )
            return [AuditEntry.model_validate(r) for r in rows]

    def active_of_type(self, segment_type: str) -> list[Segment]:
        with self._sessions() as session:
            rows = session.scalars(
                select(SegmentRow)
                .where(SegmentRow.segment_type == segment_type, SegmentRow.status == "active")
                .order_by(SegmentRow.id)
            )
            return [Segment.model_validate(r) for r in rows]

    def changes_since(self, audit_id: int | None) -> ConfigChanges:
        """A change counter per segment type, and the audit entries after `audit_id` (none when it
        is None), read in one snapshot so that they agree with each other.

        The counter is the type's rows plus the sum of their versions: a create adds a row at
        version 1, an update or an archive bumps a version, and no row is ever deleted, so every
        committed change raises it and nothing lowers it. Audit ids alone are no such measure: a
        sequence hands them out at insert, so a smaller one can commit after a larger one was read.
        """
        with self._sessions() as session:
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            counters = session.execute(
                select(SegmentRow.segment_type, func.count() + func.sum(SegmentRow.version)).group_by(
                    SegmentRow.segment_type
                )
            ).all()
            last_audit_id = session.scalar(select(func.coalesce(func.max(SegmentAuditRow.id), 0)))
            changes = []
            if audit_id is not None:
                rows = session.execute(
                    select(
                        SegmentAuditRow.id,
                        SegmentAuditRow.segment_id,
                        SegmentRow.segment_type,
                        SegmentAuditRow.action,
                        SegmentRow.status,
                        SegmentRow.version,
                        SegmentRow.params,
                    )
                    .join(SegmentRow, SegmentRow.id == SegmentAuditRow.segment_id)
                    .where(SegmentAuditRow.id > audit_id)
                    .order_by(SegmentAuditRow.id)
                )
                changes = [ConfigChange(*row) for row in rows]
        return ConfigChanges(counters={t: int(c) for t, c in counters}, last_audit_id=last_audit_id, changes=changes)

    def archived_ids(self) -> set[str]:
        with self._sessions() as session:
            return set(session.scalars(select(SegmentRow.id).where(SegmentRow.status == "archived")))


def _current(session: Session, segment_id: str) -> Segment:
    row = session.execute(select(*SegmentRow.__table__.c).where(SegmentRow.id == segment_id)).first()
    if row is None:
        raise SegmentNotFound(segment_id)
    return Segment.model_validate(dict(row._mapping))


def _compare_and_set(
    session: Session, current: Segment, changes: dict[str, Any], actor: str, action: AuditAction
) -> Segment | None:
    """Writes the next version only if the row is still at `current.version`; None if it is not."""
    row = session.execute(
        update(SegmentRow)
        .where(SegmentRow.id == current.id, SegmentRow.version == current.version)
        .values(**changes, version=current.version + 1, updated_at=func.now(), updated_by=actor)
        .returning(*SegmentRow.__table__.c)
    ).first()
    if row is None:
        return None
    written = Segment.model_validate(dict(row._mapping))
    _append_audit(session, action, actor, before=current, after=written)
    return written


def _raise_conflict(session: Session, segment_id: str) -> None:
    current = _current(session, segment_id)
    if current.status == "archived":
        raise SegmentArchived(current)
    raise StaleVersion(current)


def _append_audit(session: Session, action: AuditAction, actor: str, *, before: Segment | None, after: Segment) -> None:
    session.add(
        SegmentAuditRow(
            segment_id=after.id,
            version=after.version,
            actor=actor,
            action=action,
            before=before.audit_snapshot() if before is not None else None,
            after=after.audit_snapshot(),
        )
    )
