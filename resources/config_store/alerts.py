"""The alert outbox: alerts for the engineers wait in PostgreSQL until a webhook accepts them.

Whatever raises an alert only inserts a row, once per event (its dedup key). A deliverer claims one
due alert at a time and leases it: the claim moves its next attempt past the lease and commits, so
a second deliverer skips it and no transaction stays open while the webhook is called; an alert
whose deliverer died comes back once the lease ends. A failed delivery is tried again after a wait
that doubles each time, up to a cap; after `max_attempts` the row stays, marked as given up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from resources.config_store.models import AlertRow

# What the columns hold at most; longer text is cut rather than refused (an alert must get out).
_TITLE_CHARACTERS = 300
_ERROR_CHARACTERS = 1000


@dataclass(frozen=True)
class Alert:
    id: int
    kind: str
    title: str
    message: str
    payload: dict[str, Any]
    created_at: datetime
    attempts: int  # failed deliveries so far


@dataclass(frozen=True)
class RetryPolicy:
    first_wait_seconds: float = 30.0
    max_wait_seconds: float = 1800.0
    max_attempts: int = 10  # with the defaults above: given up about 3 hours after the first try

    def wait_after(self, failed_attempts: int) -> float:
        return min(self.first_wait_seconds * 2 ** (failed_attempts - 1), self.max_wait_seconds)


_PENDING = (AlertRow.delivered_at.is_(None), AlertRow.given_up_at.is_(None))


class AlertOutbox:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def enqueue(self, *, dedup_key: str, kind: str, title: str, message: str, payload: dict[str, Any]) -> bool:
        """Records an alert; False when one with this dedup key exists already (nothing changes then)."""
        statement = (
            insert(AlertRow)
            .values(dedup_key=dedup_key, kind=kind, title=title[:_TITLE_CHARACTERS], message=message, payload=payload)
            .on_conflict_do_nothing(constraint="uq_alerts_dedup_key")
            .returning(AlertRow.id)
        )
        with self._sessions.begin() as session:
            return session.execute(statement).scalar_one_or_none() is not None

    def claim_due(self, *, lease_seconds: float) -> Alert | None:
        """The oldest alert due for delivery, leased to the caller for `lease_seconds`."""
        with self._sessions.begin() as session:
            row = session.scalars(
                select(AlertRow)
                .where(*_PENDING, AlertRow.next_attempt_at <= func.now())
                .order_by(AlertRow.next_attempt_at, AlertRow.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).one_or_none()
            if row is None:
                return None
            row.next_attempt_at = func.now() + timedelta(seconds=lease_seconds)
            return Alert(row.id, row.kind, row.title, row.message, row.payload, row.created_at, row.attempts)

    def mark_delivered(self, alert: Alert) -> None:
        with self._sessions.begin() as session:
            session.execute(update(AlertRow).where(AlertRow.id == alert.id).values(delivered_at=func.now()))

    def mark_failed(self, alert: Alert, error: str, policy: RetryPolicy) -> bool:
        """Records a failed delivery and when to try again; True when this was the last attempt."""
        attempts = alert.attempts + 1
        given_up = attempts >= policy.max_attempts
        with self._sessions.begin() as session:
            session.execute(
                update(AlertRow)
                .where(AlertRow.id == alert.id)
                .values(
                    attempts=attempts,
                    last_error=error[:_ERROR_CHARACTERS],
                    next_attempt_at=func.now() + timedelta(seconds=policy.wait_after(attempts)),
                    given_up_at=func.now() if given_up else None,
                )
            )
        return given_up
