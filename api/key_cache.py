"""API keys checked against PostgreSQL at most every few seconds per key and process, and never for
a token that is not one (its checksum), nor for a client that keeps failing checks.

The verdicts live in two bounded LRUs, the keys found valid and the tokens found unknown, so that
junk tokens can push out only junk: a flood of forged tokens once emptied the whole cache, and
every valid key then waited on PostgreSQL again (or got 503 while it was down).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from cachetools import LRUCache

from resources.config_store.api_keys import ApiKey, ApiKeyRepository, ApiKeyUsage, hash_token, is_well_formed
from resources.config_store.guard import ConfigStoreGuard, ConfigStoreUnavailable

# A verdict's life: the fallback for a revocation notice missed (one normally lands within 1 s).
API_KEY_CACHE_SECONDS = 10.0
# A key used again within this long after its entry expired keeps its verdict while it is checked
# again in the background, so that requests of keys in use never wait on PostgreSQL.
API_KEY_RECHECK_SECONDS = 5.0
MAX_VERDICTS = 10_000  # in each LRU
# Checks a client may fail at once, then per second; past them it gets 429 without a query.
FAILED_CHECKS_BURST = 20
FAILED_CHECKS_PER_SECOND = 1.0
MAX_CLIENTS = 10_000  # clients whose failures are counted; the least recently seen are forgotten


class TooManyFailedChecks(Exception):
    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(f"too many failed API key checks from this client; retry in {retry_after_seconds} s")
        self.retry_after_seconds = retry_after_seconds


@dataclass
class FailedCheckBudget:
    """A token bucket per client (its address) of the key checks it may fail: only a failed check
    costs. Checks begun at once all pass `allow`, so a client can overdraw by what it has in
    flight; the debt (down to minus the burst) is then waited out before its next check."""

    burst: float = FAILED_CHECKS_BURST
    per_second: float = FAILED_CHECKS_PER_SECOND
    _clients: LRUCache[str, tuple[float, float]] = field(default_factory=lambda: LRUCache(MAX_CLIENTS))

    def _left(self, client: str, now: float) -> float:
        left, at = self._clients.get(client, (self.burst, now))
        return min(self.burst, left + (now - at) * self.per_second)

    def allow(self, client: str) -> None:
        """TooManyFailedChecks if the client has no failed check left to spend."""
        left = self._left(client, time.monotonic())
        if left < 1:
            raise TooManyFailedChecks(max(1, round((1 - left) / self.per_second)))

    def charge(self, client: str) -> None:
        now = time.monotonic()
        self._clients[client] = (max(-self.burst, self._left(client, now) - 1), now)


@dataclass
class ApiKeyCache:
    """Keeps PostgreSQL off the hot path: each key is checked there at most every few seconds.

    With PostgreSQL unreachable, a token seen before keeps its last verdict (lookups go on; nothing
    can be revoked meanwhile anyway) and is checked again a cache life later; an unseen one is a 503.
    A revocation notice (`revoked`) ends a key's verdicts at once, even then."""

    repository: ApiKeyRepository
    ttl_seconds: float = API_KEY_CACHE_SECONDS
    config_store: ConfigStoreGuard = field(default_factory=ConfigStoreGuard)
    usage: ApiKeyUsage = field(default_factory=ApiKeyUsage)
    accept_legacy: bool = True  # tokens issued before checksums
    failures: FailedCheckBudget = field(default_factory=FailedCheckBudget)
    _valid: LRUCache[str, tuple[ApiKey, float]] = field(default_factory=lambda: LRUCache(MAX_VERDICTS))
    _unknown: LRUCache[str, float] = field(default_factory=lambda: LRUCache(MAX_VERDICTS))
    _revoked_names: set[str] = field(default_factory=set)  # names are never reused: revoked for good
    _in_flight: dict[str, asyncio.Task[ApiKey | None]] = field(default_factory=dict)  # one check per token at once

    async def authenticate(self, token: str, client: str = "") -> ApiKey | None:
        """The token's key, or None; TooManyFailedChecks for a client past its budget, and
        ConfigStoreUnavailable for a token never seen while PostgreSQL is unreachable."""
        digest = hash_token(token)
        now = time.monotonic()
        valid = self._valid.get(digest)
        if valid is not None:
            key, expires = valid
            if expires > now:
                return key
            if expires + API_KEY_RECHECK_SECONDS > now:
                self._checking(token, digest, key)  # in the background; the verdict answers meanwhile
                return key
            return await asyncio.shield(self._checking(token, digest, key))
        if not is_well_formed(token, accept_legacy=self.accept_legacy):
            return None  # nothing to look up, nothing to remember
        unknown_until = self._unknown.get(digest)
        if unknown_until is not None and unknown_until > now:
            return None
        if digest not in self._in_flight:
            self.failures.allow(client)
        # Shielded: a caller that goes away does not cancel the check the others wait on.
        return await asyncio.shield(self._checking(token, digest, None, known=unknown_until is not None, client=client))

    def _checking(
        self, token: str, digest: str, last: ApiKey | None, *, known: bool = True, client: str | None = None
    ) -> asyncio.Task[ApiKey | None]:
        """The token's check in flight, begun if none is."""
        task = self._in_flight.get(digest)
        if task is None:
            task = self._in_flight[digest] = asyncio.create_task(self._check(token, digest, last, known, client))
        return task

    async def _check(self, token: str, digest: str, last: ApiKey | None, known: bool, client: str | None) -> ApiKey | None:
        try:
            key = await self.config_store.run(self.repository.authenticate, token)
        except ConfigStoreUnavailable:
            if not known:
                raise  # rendered as 503 by api/errors.py
            key = last
        finally:
            self._in_flight.pop(digest, None)
        if key is not None and key.name in self._revoked_names:
            key = None  # a check begun before the notice
        if key is None and client is not None:
            self.failures.charge(client)
        self._remember(digest, key)
        return key

    def _remember(self, digest: str, key: ApiKey | None) -> None:
        expires = time.monotonic() + self.ttl_seconds
        if key is None:
            self._valid.pop(digest, None)
            self._unknown[digest] = expires
        else:
            self._unknown.pop(digest, None)
            self._valid[digest] = (key, expires)

    def revoked(self, name: str) -> None:
        """A revocation notice (resources/config_store/revocations.py): the key is refused from now on."""
        self._revoked_names.add(name)
        for digest, (key, _) in list(self._valid.items()):
            if key.name == name:
                self._remember(digest, None)

    async def flush_usage(self) -> None:
        """Writes the keys' last use (api/lifespan.py calls it in the background, never a request)."""
        await self.config_store.run(self.usage.flush, self.repository)
