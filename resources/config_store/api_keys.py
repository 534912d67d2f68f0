"""API keys: high-entropy tokens shown once; only their SHA-256 is stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from resources.config_store.models import ApiKeyRow

Scope = Literal["read", "admin"]
TOKEN_PREFIX = "sgk_"


@dataclass(frozen=True)
class ApiKey:
    name: str
    scope: Scope


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ApiKeyRepository:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def create(self, name: str, scope: Scope) -> str:
        """Stores a new key and returns its token: the only time the token is known."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._sessions.begin() as session:
            session.add(ApiKeyRow(name=name, scope=scope, key_hash=hash_token(token)))
        return token

    def authenticate(self, token: str) -> ApiKey | None:
        digest = hash_token(token)
        with self._sessions() as session:
            row = session.scalars(
                select(ApiKeyRow).where(ApiKeyRow.key_hash == digest, ApiKeyRow.revoked_at.is_(None))
            ).first()
            # The lookup is by digest; compare again in constant time so timing says nothing either way.
            if row is None or not hmac.compare_digest(row.key_hash, digest):
                return None
            return ApiKey(name=row.name, scope=row.scope)  # type: ignore[arg-type]

    def revoke(self, name: str) -> bool:
        with self._sessions.begin() as session:
            result = session.execute(
                update(ApiKeyRow)
                .where(ApiKeyRow.name == name, ApiKeyRow.revoked_at.is_(None))
                .values(revoked_at=datetime.now(timezone.utc))
            )
            return result.rowcount > 0

    def list(self) -> list[dict[str, object]]:
        with self._sessions() as session:
            return [
                {"name": r.name, "scope": r.scope, "created_at": r.created_at, "revoked_at": r.revoked_at}
                for r in session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.name))
            ]
