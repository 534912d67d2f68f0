"""API keys checked against PostgreSQL at most every few seconds per key and process."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from resources.config_store.api_keys import (
    ApiKey,
    ApiKeyRepository,
    ApiKeyUsage,
    hash_token,
)
from resources.config_store.guard import ConfigStoreGuard, ConfigStoreUnavailable

# A revoked key stops working within this many seconds (the life of the in-process key cache).
API_KEY_CACHE_SECONDS = 10.0
# A key used again within this long after its entry expired keeps its verdict while it is checked
# again in the background, so that requests of keys in use never wait on PostgreSQL.
API_KEY_RECHECK_SECONDS = 5.0


@dataclass
class ApiKeyCache:
    """Keeps PostgreSQL off the hot path: each key is checked there at most every few seconds.

    With PostgreSQL unreachable, a key seen before keeps its last verdict (lookups go on; nothing
    can be revoked meanwhile anyway) and is checked again a cache life later; an unseen key is a 503."""

    repository: ApiKeyRepository
    ttl_seconds: float = API_KEY_CACHE_SECONDS
    config_store: ConfigStoreGuard = field(default_factory=ConfigStoreGuard)
    usage: ApiKeyUsage = field(default_factory=ApiKeyUsage)
    _entries: dict[str, tuple[ApiKey | None, float]] = field(default_factory=dict)
    _rechecks: dict[str, asyncio.Task[ApiKey | None]] = field(default_factory=dict)

    async def authenticate(self, token: str) -> ApiKey | None:
        digest = hash_token(token)
        now = time.monotonic()
        cached = self._entries.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        if cached is not None and cached[1] + API_KEY_RECHECK_SECONDS > now:
            if digest not in self._rechecks:
                self._rechecks[digest] = asyncio.create_task(self._check(token, digest, cached[0]))
            return cached[0]
        return await self._check(token, digest, cached[0] if cached else None, known=cached is not None)

    async def _check(self, token: str, digest: str, last: ApiKey | None, known: bool = True) -> ApiKey | None:
        try:
            key = await self.config_store.run(self.repository.authenticate, token)
        except ConfigStoreUnavailable:
            if not known:
                raise  # rendered as 503 by api/errors.py
            key = last
        finally:
            self._rechecks.pop(digest, None)
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[digest] = (key, time.monotonic() + self.ttl_seconds)
        return key

    async def flush_usage(self) -> None:
        """Writes the keys' last use (api/lifespan.py calls it in the background, never a request)."""
        await self.config_store.run(self.usage.flush, self.repository)
