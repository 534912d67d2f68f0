"""Previews: the queue of "how many members would this segment have?" and their answers.

The API inserts a preview `queued`. The preview sensor claims queued ones (writes the run key it
requests their run under) so that no two runs are asked for one preview; the run marks them
`running` with its run id, then `done` with the exact count and a sample, or `failed` with why.
Every status change after the request is a compare-and-set on the status (and the run id), so a
late or repeated writer never overwrites a newer outcome. The sensor fails what a dead run left
unfinished, and deletes finished previews once they are older than the retention.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from resources.config_store.models import PreviewRow

PreviewStatus = Literal["queued", "running", "done", "failed"]
UNFINISHED: tuple[PreviewStatus, ...] = ("queued", "running")
FINISHED: tuple[PreviewStatus, ...] = ("done", "failed")
# What `error` holds at most; longer text is cut (a Spark error can run to pages).
ERROR_CHARACTERS = 1000


@dataclass(frozen=True)
class Preview:
    id: str
    segment_type: str
    params: dict[str, Any]
    partition_key: str
    status: PreviewStatus
    member_count: int | None
    sample_customer_ids: list[str] | None
    error: str | None
    requested_by: str
    requested_at: datetime
    claim: str | None
    claimed_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    run_id: str | None

    @classmethod
    def of(cls, row: PreviewRow) -> Preview:
        return cls(**{name: getattr(row, name) for name in cls.__dataclass_fields__})


class PreviewNotFound(LookupError):
    pass


def new_preview_id() -> str:
    return f"prv_{secrets.token_hex(8)}"


def cut_error(error: str) -> str:
    return error if len(error) <= ERROR_CHARACTERS else error[: ERROR_CHARACTERS - 1] + "…"


class PreviewRepository:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    # The API's side.

    def create(self, *, segment_type: str, params: dict[str, Any], partition_key: str, requested_by: str) -> Preview:
        with self._sessions.begin() as session:
            row = PreviewRow(
                id=new_preview_id(),
                segment_type=segment_type,
                params=params,
                partition_key=partition_key,
                status="queued",
                requested_by=requested_by,
            )
            session.add(row)
            session.flush()
            session.refresh(row)  # requested_at, from the database's clock
            return Preview.of(row)

    def get(self, preview_id: str) -> Preview:
        with self._sessions() as session:
            row = session.get(PreviewRow, preview_id)
            if row is None:
                raise PreviewNotFound(preview_id)
            return Preview.of(row)

    def unfinished_count(self) -> int:
        with self._sessions() as session:
            return session.scalar(select(func.count()).where(PreviewRow.status.in_(UNFINISHED))) or 0

    # The preview sensor's side.

    def claim_queued(self, claim: str, *, limit: int) -> list[Preview]:
        """The oldest queued previews no run was asked for yet, up to `limit`, now claimed under
        `claim` (the run key of the run about to be requested). SKIP LOCKED: two ticks never claim one."""
        with self._sessions.begin() as session:
            rows = session.scalars(
                select(PreviewRow)
                .where(PreviewRow.status == "queued", PreviewRow.claim.is_(None))
                .order_by(PreviewRow.requested_at, PreviewRow.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            for row in rows:
                row.claim = claim
                row.claimed_at = func.now()
            session.flush()
            return [Preview.of(row) for row in rows]

    def unfinished(self) -> list[Preview]:
        """Previews a run was asked for that have not finished: claimed and still queued, or running."""
        with self._sessions() as session:
            rows = session.scalars(
                select(PreviewRow)
                .where(PreviewRow.status.in_(UNFINISHED), (PreviewRow.status == "running") | PreviewRow.claim.is_not(None))
                .order_by(PreviewRow.requested_at)
            ).all()
            return [Preview.of(row) for row in rows]

    def release(self, preview_ids: Iterable[str], claim: str) -> int:
        """Back to the queue: the run asked for under `claim` never came to be."""
        with self._sessions.begin() as session:
            result = session.execute(
                update(PreviewRow)
                .where(PreviewRow.id.in_(list(preview_ids)), PreviewRow.status == "queued", PreviewRow.claim == claim)
                .values(claim=None, claimed_at=None)
            )
            return result.rowcount

    def fail_unfinished(self, preview: Preview, error: str) -> bool:
        """Fails a preview that is still as `preview` saw it (same status and run); False when it moved on."""
        with self._sessions.begin() as session:
            result = session.execute(
                update(PreviewRow)
                .where(
                    PreviewRow.id == preview.id,
                    PreviewRow.status == preview.status,
                    PreviewRow.claim.is_not_distinct_from(preview.claim),
                    PreviewRow.run_id.is_not_distinct_from(preview.run_id),
                )
                .values(status="failed", error=cut_error(error), finished_at=func.now())
            )
            return result.rowcount == 1

    def delete_finished_before(self, cutoff: datetime) -> int:
        """Finished previews requested before `cutoff`; unfinished ones stay whatever their age."""
        with self._sessions.begin() as session:
            result = session.execute(
                delete(PreviewRow).where(PreviewRow.status.in_(FINISHED), PreviewRow.requested_at < cutoff)
            )
            return result.rowcount

    def now(self) -> datetime:
        """The database's clock: what `requested_at` and the other times are measured by."""
        with self._sessions() as session:
            return session.scalar(select(func.now()))

    # The preview run's side.

    def start(self, preview_ids: Iterable[str], run_id: str) -> list[Preview]:
        """Marks the queued ones among `preview_ids` running under `run_id` (and takes back those
        already running under it: a re-executed run); the previews this run is to compute."""
        with self._sessions.begin() as session:
            session.execute(
                update(PreviewRow)
                .where(PreviewRow.id.in_(list(preview_ids)), PreviewRow.status == "queued")
                .values(status="running", run_id=run_id, started_at=func.now())
            )
            rows = session.scalars(
                select(PreviewRow)
                .where(PreviewRow.id.in_(list(preview_ids)), PreviewRow.status == "running", PreviewRow.run_id == run_id)
                .order_by(PreviewRow.requested_at, PreviewRow.id)
            ).all()
            return [Preview.of(row) for row in rows]

    def finish(self, preview_id: str, run_id: str, *, member_count: int, sample_customer_ids: list[str]) -> bool:
        return self._end(preview_id, run_id, status="done", member_count=member_count, sample_customer_ids=sample_customer_ids)

    def fail(self, preview_id: str, run_id: str, error: str) -> bool:
        return self._end(preview_id, run_id, status="failed", error=cut_error(error))

    def _end(self, preview_id: str, run_id: str, **values: Any) -> bool:
        """Only a preview still running under this run: one the sensor failed meanwhile stays failed."""
        with self._sessions.begin() as session:
            result = session.execute(
                update(PreviewRow)
                .where(PreviewRow.id == preview_id, PreviewRow.status == "running", PreviewRow.run_id == run_id)
                .values(finished_at=func.now(), **values)
            )
            return result.rowcount == 1
