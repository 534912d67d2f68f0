"""The console's sign-ins and one-time form tokens, kept in PostgreSQL so that every API process
(and worker) sees the same ones, and a sign-out or a key's revocation ends a session at once.

A session is found by the SHA-256 of its cookie's token (the token itself is never stored), and
only while its API key is not revoked, it has been used within the idle time, and it is younger
than the absolute limit. A create form carries a one-time token: the first submission claims it,
so that a form sent twice makes one segment.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, insert, literal, null, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session, sessionmaker

from resources.config_store.api_keys import Scope, hash_token
from resources.config_store.models import ApiKeyRow, ConsoleSessionRow, ConsoleSubmissionRow

# However active, a sign-in lasts at most this long: a stolen cookie is not good forever.
SESSION_MAX_SECONDS = 24 * 3600
# `last_seen_at` is written at most this often per session: a page view is not a write each time.
SEEN_WRITE_SECONDS = 60
# A form token is remembered this long: longer than any form stays open, session expiry included.
SUBMISSION_KEPT_SECONDS = 7 * 24 * 3600
# A create takes milliseconds; a claim still unfinished after this long was abandoned.
ABANDONED_SECONDS = 60


@dataclass(frozen=True)
class ConsoleSession:
    key_name: str
    scope: Scope
    kept_input: dict[str, Any] | None  # a form's input carried through a sign-in (see `open`)


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming a form token: first (go on and create), or the segment made by the
    first submission (None while that one is still being saved)."""

    first: bool
    segment_id: str | None = None


class ConsoleSessions:
    def __init__(self, sessions: sessionmaker[Session], *, idle_seconds: float) -> None:
        self._sessions = sessions
        self.idle_seconds = idle_seconds

    def _alive(self) -> Any:
        now = func.now()
        return (ConsoleSessionRow.last_seen_at > now - timedelta(seconds=self.idle_seconds)) & (
            ConsoleSessionRow.created_at > now - timedelta(seconds=SESSION_MAX_SECONDS)
        )

    def open(self, api_key: str, kept_input: dict[str, Any] | None = None) -> str | None:
        """A new session of the key (None if the key is unknown or revoked); returns its token.
        `kept_input` is handed back once, by `take_kept_input`: a form sent after the last
        session expired, to be shown again filled in."""
        token = secrets.token_urlsafe(32)
        kept = literal(kept_input, ConsoleSessionRow.kept_input.type) if kept_input is not None else null()
        query = select(literal(hash_token(token)), ApiKeyRow.id, kept).where(
            ApiKeyRow.key_hash == hash_token(api_key), ApiKeyRow.revoked_at.is_(None)
        )
        with self._sessions.begin() as session:
            # Housekeeping on the rare write: sessions that can no longer be used.
            session.execute(delete(ConsoleSessionRow).where(~self._alive()))
            inserted = session.execute(
                insert(ConsoleSessionRow).from_select(["token_hash", "api_key_id", "kept_input"], query)
            )
            return token if inserted.rowcount else None

    def find(self, token: str) -> ConsoleSession | None:
        """The session of the token, if it is alive and its key not revoked; marks it used."""
        digest = hash_token(token)
        with self._sessions.begin() as session:
            row = session.execute(
                select(
                    ApiKeyRow.name,
                    ApiKeyRow.scope,
                    ConsoleSessionRow.kept_input,
                    ConsoleSessionRow.last_seen_at,
                    func.now(),
                )
                .select_from(ConsoleSessionRow)
                .join(ApiKeyRow, ApiKeyRow.id == ConsoleSessionRow.api_key_id)
                .where(ConsoleSessionRow.token_hash == digest, ApiKeyRow.revoked_at.is_(None), self._alive())
            ).first()
            if row is None:
                return None
            name, scope, kept_input, last_seen_at, now = row
            if (now - last_seen_at).total_seconds() > SEEN_WRITE_SECONDS:
                session.execute(
                    update(ConsoleSessionRow)
                    .where(ConsoleSessionRow.token_hash == digest)
                    .values(last_seen_at=func.now())
                )
            return ConsoleSession(key_name=name, scope=scope, kept_input=kept_input)

    def take_kept_input(self, token: str) -> dict[str, Any] | None:
        """The input kept by `open`, once: it is forgotten as it is read."""
        digest = hash_token(token)
        with self._sessions.begin() as session:
            kept = session.scalar(
                select(ConsoleSessionRow.kept_input).where(ConsoleSessionRow.token_hash == digest).with_for_update()
            )
            if kept is not None:
                session.execute(
                    update(ConsoleSessionRow).where(ConsoleSessionRow.token_hash == digest).values(kept_input=null())
                )
            return kept

    def close(self, token: str) -> None:
        with self._sessions.begin() as session:
            session.execute(delete(ConsoleSessionRow).where(ConsoleSessionRow.token_hash == hash_token(token)))

    # --- one-time form tokens -------------------------------------------------------------------

    def claim(self, form_token: str) -> Claim:
        """Claims the token for one submission: `first` for the first caller only, however many
        send it at once (the primary key decides). A claim left unfinished for `ABANDONED_SECONDS`
        (its process died, or PostgreSQL went away before it could be released) is taken over."""
        table = ConsoleSubmissionRow
        now = func.now()
        claim = pg_insert(table).values(token=form_token)
        claim = claim.on_conflict_do_update(
            index_elements=[table.token],
            set_={"created_at": now},
            where=table.segment_id.is_(None) & (table.created_at < now - timedelta(seconds=ABANDONED_SECONDS)),
        ).returning(table.token)
        with self._sessions.begin() as session:
            session.execute(delete(table).where(table.created_at < now - timedelta(seconds=SUBMISSION_KEPT_SECONDS)))
            if session.execute(claim).first() is not None:
                return Claim(first=True)
            return Claim(
                first=False, segment_id=session.scalar(select(table.segment_id).where(table.token == form_token))
            )

    def submitted(self, form_token: str) -> str | None:
        """The segment the token's first submission created; None while it is being saved."""
        with self._sessions() as session:
            return session.scalar(
                select(ConsoleSubmissionRow.segment_id).where(ConsoleSubmissionRow.token == form_token)
            )

    def complete(self, form_token: str, segment_id: str) -> None:
        with self._sessions.begin() as session:
            session.execute(
                update(ConsoleSubmissionRow)
                .where(ConsoleSubmissionRow.token == form_token)
                .values(segment_id=segment_id)
            )

    def release(self, form_token: str) -> None:
        """The submission made nothing (bad input): the same form may be sent again, once fixed."""
        with self._sessions.begin() as session:
            session.execute(
                delete(ConsoleSubmissionRow).where(
                    ConsoleSubmissionRow.token == form_token, ConsoleSubmissionRow.segment_id.is_(None)
                )
            )
