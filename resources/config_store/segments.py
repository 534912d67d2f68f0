"""Segment configs: validation, the repository over PostgreSQL, and the audit trail it keeps."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typing_extensions import Annotated

from resources.config_store.models import SegmentAuditRow, SegmentRow

SegmentStatus = Literal["active", "paused", "archived"]
LabelKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]
LabelValue = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f]*$")]
Labels = Annotated[dict[LabelKey, LabelValue], Field(max_length=32)]


class Segment(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    description: str | None
    segment_type: str
    params: dict[str, Any]
    labels: dict[str, str]
    store_id: str | None
    category: str | None
    city: str | None
    country: str | None
    status: SegmentStatus
    version: int
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str

    def audit_snapshot(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"created_at", "updated_at"})


class SegmentNotFound(LookupError):
    pass


class StaleVersion(Exception):
    def __init__(self, current_version: int) -> None:
        super().__init__(f"the segment is at version {current_version}")
        self.current_version = current_version


def new_segment_id() -> str:
    return f"seg_{secrets.token_hex(8)}"


class SegmentRepository:
    """Every write also appends its audit row, in the same transaction."""

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
            session.add(
                SegmentAuditRow(
                    segment_id=row.id, version=1, actor=actor, action="create", before=None, after=segment.audit_snapshot()
                )
            )
            return segment

    def get(self, segment_id: str) -> Segment:
        with self._sessions() as session:
            row = session.get(SegmentRow, segment_id)
            if row is None:
                raise SegmentNotFound(segment_id)
            return Segment.model_validate(row)

    def active_of_type(self, segment_type: str) -> list[Segment]:
        with self._sessions() as session:
            rows = session.scalars(
                select(SegmentRow)
                .where(SegmentRow.segment_type == segment_type, SegmentRow.status == "active")
                .order_by(SegmentRow.id)
            )
            return [Segment.model_validate(r) for r in rows]

    def archived_ids(self) -> set[str]:
        with self._sessions() as session:
            return set(session.scalars(select(SegmentRow.id).where(SegmentRow.status == "archived")))
