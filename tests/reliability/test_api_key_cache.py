"""The API's key cache: revocation within the cache's life, and keys that keep working, without
waiting, while PostgreSQL is unreachable (api/key_cache.py `ApiKeyCache`)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from api.key_cache import API_KEY_RECHECK_SECONDS, ApiKeyCache
from resources.config_store.api_keys import ApiKey
from resources.config_store.guard import ConfigStoreGuard, ConfigStoreUnavailable

READER = ApiKey(name="reader", scope="read")


class FakeKeys:
    """The repository's `authenticate`, with a switch for PostgreSQL being down or slow."""

    def __init__(self) -> None:
        self.valid = {"sgk_reader": READER}
        self.down = False
        self.delay = 0.0
        self.calls = 0

    def authenticate(self, token: str) -> ApiKey | None:
        self.calls += 1
        time.sleep(self.delay)
        if self.down:
            raise OperationalError("SELECT", {}, Exception("connection refused"))
        return self.valid.get(token)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_a_revoked_key_is_refused_within_the_cache_life_plus_one_check() -> None:
    keys = FakeKeys()

    async def scenario() -> float:
        cache = ApiKeyCache(keys, ttl_seconds=0.2)  # type: ignore[arg-type]
        assert await cache.authenticate("sgk_reader") == READER
        del keys.valid["sgk_reader"]  # revoked
        revoked_at = time.monotonic()
        while await cache.authenticate("sgk_reader") is not None:
            assert time.monotonic() - revoked_at < 0.2 + 0.5
            await asyncio.sleep(0.01)
        return time.monotonic() - revoked_at

    assert 0.15 < run(scenario()) < 0.7


def test_a_key_unused_for_longer_than_the_grace_is_checked_before_it_is_accepted() -> None:
    keys = FakeKeys()

    async def scenario() -> ApiKey | None:
        cache = ApiKeyCache(keys, ttl_seconds=0.05)  # type: ignore[arg-type]
        await cache.authenticate("sgk_reader")
        del keys.valid["sgk_reader"]
        digest, (key, _) = next(iter(cache._entries.items()))
        cache._entries[digest] = (key, time.monotonic() - API_KEY_RECHECK_SECONDS - 1)  # long expired
        return await cache.authenticate("sgk_reader")

    assert run(scenario()) is None  # never once more on an old verdict


def test_keys_in_use_never_wait_on_a_slow_or_dead_postgresql() -> None:
    keys = FakeKeys()

    async def scenario() -> tuple[list[ApiKey | None], float]:
        # The config store's breaker lets a check through every 0.1 s once it has opened.
        cache = ApiKeyCache(keys, ttl_seconds=0.05, config_store=ConfigStoreGuard(open_seconds=0.1))  # type: ignore[arg-type]
        await cache.authenticate("sgk_reader")
        keys.down, keys.delay = True, 0.3  # PostgreSQL hangs a while, then fails
        verdicts, slowest = [], 0.0
        ends = time.monotonic() + 1.5  # many cache lives
        while time.monotonic() < ends:
            started = time.monotonic()
            verdicts.append(await cache.authenticate("sgk_reader"))
            slowest = max(slowest, time.monotonic() - started)
            await asyncio.sleep(0.01)
        return verdicts, slowest

    verdicts, slowest = run(scenario())
    assert set(verdicts) == {READER}
    assert slowest < 0.1  # re-checks ran in the background
    assert keys.calls >= 3  # and were tried again, every cache life


def test_an_unseen_key_with_postgresql_down_is_an_error_not_a_verdict() -> None:
    keys = FakeKeys()
    keys.down = True
    with pytest.raises(ConfigStoreUnavailable):
        run(ApiKeyCache(keys).authenticate("sgk_reader"))  # type: ignore[arg-type]
