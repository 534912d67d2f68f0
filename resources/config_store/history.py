"""Calculation history: every segment's member count, entered and exited, per calculation.

The calculation step records a row per computed segment as soon as its partition is computed (so
the next partition of the same run already finds it as the earlier one); the index step then names
the index that holds it. A partition computed twice keeps both rows: the latest is the one that
counts, as its results folder in the lake is the latest one too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict
from sqlalchemy import exists, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session, sessionmaker

from resources.config_store.models import SegmentCalculationRow, SegmentRow
from resources.config_store.segments import SegmentNotFound


@dataclass(frozen=True)
class RecordedSegment:
    segment_id: str
    config_version: int
    member_count: int
    entered: int | None
    exited: int | None


@dataclass(frozen=True)
class EarlierCalculation:
    """The calculation a segment's next one is compared with: its latest earlier partition."""

    partition_key: str
    run_id: str


class Calculation(BaseModel):
    """One entry of a segment's history (SPEC 7), `served` left to the reader of the alias."""

    model_config = ConfigDict(from_attributes=True)

    partition: str
    calculated_at: datetime
    member_count: int
    entered: int | None
    exited: int | None
    index: str | None


class CalculationHistory:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def record(
        self,
        *,
        segment_type: str,
        partition_key: str,
        run_id: str,
        calculated_at: datetime,
        segments: list[RecordedSegment],
    ) -> None:
        if not segments:
            return
        rows = [
            {
                "segment_type": segment_type,
                "partition_key": partition_key,
                "run_id": run_id,
                "calculated_at": calculated_at,
                "segment_id": s.segment_id,
                "config_version": s.config_version,
                "member_count": s.member_count,
                "entered": s.entered,
                "exited": s.exited,
            }
            for s in segments
        ]
        upsert = pg_insert(SegmentCalculationRow)
        # A step retried within its run records its partition again: the retry's counts win.
        upsert = upsert.on_conflict_do_update(
            constraint="uq_segment_calculations_run",
            set_={name: upsert.excluded[name] for name in ("calculated_at", "config_version", "member_count", "entered", "exited")},
        )
        with self._sessions.begin() as session:
            session.execute(upsert, rows)

    def set_index(self, *, segment_type: str, partition_key: str, run_id: str, index: str) -> int:
        """Names the index that holds the calculation `run_id` made of the partition; the rows named."""
        with self._sessions.begin() as session:
            result = session.execute(
                update(SegmentCalculationRow)
                .where(
                    SegmentCalculationRow.segment_type == segment_type,
                    SegmentCalculationRow.partition_key == partition_key,
                    SegmentCalculationRow.run_id == run_id,
                )
                .values(index=index)
            )
            return result.rowcount

    def earlier_calculations(self, segment_type: str, partition_key: str) -> dict[str, EarlierCalculation]:
        """segment_id -> the latest calculation of the latest partition before `partition_key` that
        computed it. Only a partition's latest calculation counts: its results are what the lake holds."""
        table = SegmentCalculationRow
        latest_runs = (
            select(table.partition_key, table.run_id)
            .where(table.segment_type == segment_type, table.partition_key < partition_key)
            .distinct(table.partition_key)
            .order_by(table.partition_key, table.calculated_at.desc())
            .subquery()
        )
        query = (
            select(table.segment_id, table.partition_key, table.run_id)
            .join(latest_runs, (table.partition_key == latest_runs.c.partition_key) & (table.run_id == latest_runs.c.run_id))
            .where(table.segment_type == segment_type)
            .distinct(table.segment_id)
            .order_by(table.segment_id, table.partition_key.desc())
        )
        with self._sessions() as session:
            return {r.segment_id: EarlierCalculation(r.partition_key, r.run_id) for r in session.execute(query)}

    def latest_of(self, segment_ids: list[str]) -> dict[str, Calculation]:
        """segment_id -> its latest calculation of its newest partition, for those calculated: a
        page of the console's segment list in one query."""
        if not segment_ids:
            return {}
        table = SegmentCalculationRow
        query = (
            select(table)
            .where(table.segment_id.in_(segment_ids))
            .distinct(table.segment_id)
            .order_by(table.segment_id, table.partition_key.desc(), table.calculated_at.desc())
        )
        with self._sessions() as session:
            return {r.segment_id: _calculation(r) for r in session.scalars(query)}

    def of_segment(self, segment_id: str, *, limit: int) -> list[Calculation]:
        """The segment's latest calculation of each partition, newest partition first; raises
        SegmentNotFound for an unknown segment."""
        table = SegmentCalculationRow
        query = (
            select(table)
            .where(table.segment_id == segment_id)
            .distinct(table.partition_key)
            .order_by(table.partition_key.desc(), table.calculated_at.desc())
            .limit(limit)
        )
        with self._sessions() as session:
            rows = list(session.scalars(query))
            if not rows and not session.scalar(select(exists().where(SegmentRow.id == segment_id))):
                raise SegmentNotFound(segment_id)
            return [_calculation(r) for r in rows]


def _calculation(row: SegmentCalculationRow) -> Calculation:
    return Calculation(
        partition=row.partition_key,
        calculated_at=row.calculated_at,
        member_count=row.member_count,
        entered=row.entered,
        exited=row.exited,
        index=row.index,
    )

