"""API keys: high-entropy tokens shown once; only their SHA-256 is stored.

A token ends with a checksum of the rest, as GitHub's do, so that the API refuses a forged or
mistyped token without asking PostgreSQL. Tokens issued before checksums (`sgk_` and 43
characters) stay valid; `SEGMENTATION_API_ACCEPT_LEGACY_KEYS=false` refuses them once rotated."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import threading
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from resources.config_store.models import ApiKeyRow

Scope = Literal["read", "admin"]
TOKEN_PREFIX = "sgk_"
_CHECKSUM_ALPHABET = string.digits + string.ascii_letters
_CHECKSUM_CHARACTERS = 6  # 62**6 > 2**32: every CRC-32 fits
_TOKEN = re.compile(r"sgk_[A-Za-z0-9_-]{43}[0-9A-Za-z]{6}")
_LEGACY_TOKEN = re.compile(r"sgk_[A-Za-z0-9_-]{43}")
# The name is the actor in the audit log, so it is plain: like an id, at most 200 characters.
KEY_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,199}$")


@dataclass(frozen=True)
class ApiKey:
    name: str
    scope: Scope


class ApiKeyNameTaken(ValueError):
    pass


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _checksum(body: str) -> str:
    value, digits = zlib.crc32(body.encode()), []
    for _ in range(_CHECKSUM_CHARACTERS):
        value, digit = divmod(value, len(_CHECKSUM_ALPHABET))
        digits.append(_CHECKSUM_ALPHABET[digit])
    return "".join(digits)


def new_token() -> str:
    body = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return body + _checksum(body)


def is_well_formed(token: str, *, accept_legacy: bool = True) -> bool:
    """Whether this platform could have issued the token: its shape, and its checksum. Not a
    secret check (anyone can compute a CRC): it only spares PostgreSQL random and mistyped tokens."""
    if _TOKEN.fullmatch(token):
        return token[-_CHECKSUM_CHARACTERS:] == _checksum(token[:-_CHECKSUM_CHARACTERS])
    return accept_legacy and _LEGACY_TOKEN.fullmatch(token) is not None


class ApiKeyRepository:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def create(self, name: str, scope: Scope) -> str:
        """Stores a new key and returns its token: the only time the token is known.

        Names are never reused, not even a revoked key's, so that the audit log's actors stay unambiguous.
        """
        if not KEY_NAME_PATTERN.match(name):
            raise ValueError(f"invalid key name {name!r}: letters, digits and '_.:@-', at most 200 characters")
        if scope not in ("read", "admin"):
            raise ValueError(f"invalid scope {scope!r}: 'read' or 'admin'")
        token = new_token()
        try:
            with self._sessions.begin() as session:
                session.add(ApiKeyRow(name=name, scope=scope, key_hash=hash_token(token)))
        except IntegrityError as error:
            raise ApiKeyNameTaken(f"a key named {name!r} exists already (names are never reused)") from error
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

    def record_usage(self, last_used: dict[str, datetime]) -> None:
        """Sets `last_used_at` of the named keys, never moving it back (several API processes write it)."""
        if not last_used:
            return
        statement = (
            update(ApiKeyRow.__table__)
            .where(
                ApiKeyRow.__table__.c.name == bindparam("key_name"),
                or_(ApiKeyRow.__table__.c.last_used_at.is_(None), ApiKeyRow.__table__.c.last_used_at < bindparam("at")),
            )
            .values(last_used_at=bindparam("at"))
        )
        with self._sessions.begin() as session:
            session.connection().execute(statement, [{"key_name": n, "at": at} for n, at in last_used.items()])

    def list(self) -> list[dict[str, object]]:
        with self._sessions() as session:
            return [
                {
                    "name": r.name,
                    "scope": r.scope,
                    "created_at": r.created_at,
                    "last_used_at": r.last_used_at,
                    "revoked_at": r.revoked_at,
                }
                for r in session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.name))
            ]


class ApiKeyUsage:
    """When each key was last used, kept in memory by the API and written by `flush` in the
    background: requests never wait on it, and each key costs at most one UPDATE per flush."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, datetime] = {}

    def seen(self, key: ApiKey) -> None:
        now = datetime.now(timezone.utc)
        with self._lock:
            self._pending[key.name] = now

    def flush(self, repository: ApiKeyRepository) -> int:
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return 0
        try:
            repository.record_usage(pending)
        except Exception:
            with self._lock:  # PostgreSQL unreachable: keep the times for the next flush
                self._pending = pending | self._pending
            raise
        return len(pending)
