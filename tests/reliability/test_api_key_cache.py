"""The API's key cache: revocation within the cache's life, and keys that keep working, without
waiting, while PostgreSQL is unreachable (api/key_cache.py `ApiKeyCache`)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from api.key_cache import API_KEY_RECHECK_SECONDS, MAX_VERDICTS, ApiKeyCache, FailedCheckBudget, TooManyFailedChecks
from resources.config_store.api_keys import ApiKey, new_token
from resources.config_store.guard import ConfigStoreGuard, ConfigStoreUnavailable

READER = ApiKey(name="reader", scope="read")
TOKEN = new_token()


class FakeKeys:
    """The repository's `authenticate`, with a switch for PostgreSQL being down or slow."""

    def __init__(self) -> None:
        self.valid = {TOKEN: READER}
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
        assert await cache.authenticate(TOKEN) == READER
        del keys.valid[TOKEN]  # revoked
        revoked_at = time.monotonic()
        while await cache.authenticate(TOKEN) is not None:
            assert time.monotonic() - revoked_at < 0.2 + 0.5
            await asyncio.sleep(0.01)
        return time.monotonic() - revoked_at

    assert 0.15 < run(scenario()) < 0.7


def test_a_key_unused_for_longer_than_the_grace_is_checked_before_it_is_accepted() -> None:
    keys = FakeKeys()

    async def scenario() -> ApiKey | None:
        cache = ApiKeyCache(keys, ttl_seconds=0.05)  # type: ignore[arg-type]
        await cache.authenticate(TOKEN)
        del keys.valid[TOKEN]
        digest, (key, _) = next(iter(cache._valid.items()))
        cache._valid[digest] = (key, time.monotonic() - API_KEY_RECHECK_SECONDS - 1)  # long expired
        return await cache.authenticate(TOKEN)

    assert run(scenario()) is None  # never once more on an old verdict


def test_keys_in_use_never_wait_on_a_slow_or_dead_postgresql() -> None:
    keys = FakeKeys()

    async def scenario() -> tuple[list[ApiKey | None], float]:
        # The config store's breaker lets a check through every 0.1 s once it has opened.
        cache = ApiKeyCache(keys, ttl_seconds=0.05, config_store=ConfigStoreGuard(open_seconds=0.1))  # type: ignore[arg-type]
        await cache.authenticate(TOKEN)
        keys.down, keys.delay = True, 0.3  # PostgreSQL hangs a while, then fails
        verdicts, slowest = [], 0.0
        ends = time.monotonic() + 1.5  # many cache lives
        while time.monotonic() < ends:
            started = time.monotonic()
            verdicts.append(await cache.authenticate(TOKEN))
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
        run(ApiKeyCache(keys).authenticate(TOKEN))  # type: ignore[arg-type]


def test_a_token_that_is_not_one_never_reaches_postgresql() -> None:
    keys = FakeKeys()
    wrong_checksum = TOKEN[:-1] + ("A" if TOKEN[-1] != "A" else "B")
    forged = [wrong_checksum, TOKEN[:-1], "sgk_" + "A" * 50, "not-a-key", TOKEN + "x", "sgk_" + "A" * 42 + "!"]

    async def scenario() -> list[ApiKey | None]:
        cache = ApiKeyCache(keys)  # type: ignore[arg-type]
        return [await cache.authenticate(token, "attacker") for token in forged]

    assert run(scenario()) == [None] * len(forged)
    assert keys.calls == 0


def test_legacy_tokens_are_checked_unless_refused_by_the_setting() -> None:
    keys = FakeKeys()
    legacy = "sgk_" + "L" * 43  # the shape of a key issued before checksums
    keys.valid[legacy] = READER
    assert run(ApiKeyCache(keys).authenticate(legacy)) == READER  # type: ignore[arg-type]
    assert run(ApiKeyCache(keys, accept_legacy=False).authenticate(legacy)) is None  # type: ignore[arg-type]
    assert keys.calls == 1


def test_junk_tokens_never_push_a_valid_key_out() -> None:
    """10,001 unknown tokens once emptied the whole cache: every valid key then went back to PostgreSQL."""
    keys = FakeKeys()

    async def scenario() -> ApiKey | None:
        cache = ApiKeyCache(keys, failures=FailedCheckBudget(burst=1e9))  # type: ignore[arg-type]
        assert await cache.authenticate(TOKEN) == READER
        for _ in range(MAX_VERDICTS + 1):
            assert await cache.authenticate(new_token(), "attacker") is None
        keys.down = True  # the valid key is answered from the cache, or it would be a 503
        return await cache.authenticate(TOKEN)

    assert run(scenario()) == READER
    assert keys.calls == MAX_VERDICTS + 2


def test_a_client_that_keeps_failing_checks_is_refused_without_a_query() -> None:
    keys = FakeKeys()

    async def scenario() -> tuple[int, int, ApiKey | None, ApiKey | None]:
        cache = ApiKeyCache(keys, failures=FailedCheckBudget(burst=5, per_second=0.001))  # type: ignore[arg-type]
        assert await cache.authenticate(TOKEN, "10.0.0.1") == READER
        refused = 0
        for _ in range(50):
            try:
                await cache.authenticate(new_token(), "10.0.0.1")
            except TooManyFailedChecks as error:
                assert error.retry_after_seconds >= 1
                refused += 1
        calls = keys.calls
        # Its valid key still works (no check needed), and another client is not touched.
        return refused, calls, await cache.authenticate(TOKEN, "10.0.0.1"), await cache.authenticate(TOKEN, "10.0.0.2")

    refused, calls, own, other = run(scenario())
    assert refused == 45 and calls == 1 + 5
    assert own == READER and other == READER


def test_a_revocation_notice_refuses_the_key_at_once_even_with_postgresql_down() -> None:
    keys = FakeKeys()

    async def scenario() -> list[ApiKey | None]:
        cache = ApiKeyCache(keys, ttl_seconds=0.05)  # type: ignore[arg-type]
        assert await cache.authenticate(TOKEN) == READER
        await asyncio.sleep(0.06)
        keys.delay = 0.2
        assert await cache.authenticate(TOKEN) == READER  # expired: a check begins in the background
        cache.revoked(READER.name)  # the notice arrives while it runs
        verdicts = [await cache.authenticate(TOKEN)]
        await asyncio.sleep(0.3)  # the check that began before the notice ends: still refused
        keys.down = True
        verdicts.append(await cache.authenticate(TOKEN))
        await asyncio.sleep(0.1)
        verdicts.append(await cache.authenticate(TOKEN))  # past the cache life, PostgreSQL down: refused, not 503
        return verdicts

    assert run(scenario()) == [None, None, None]


def test_concurrent_requests_of_a_key_not_cached_share_one_check_and_cost_nothing() -> None:
    """After a restart, a client's burst with its valid key: one query, no 429."""
    keys = FakeKeys()
    keys.delay = 0.05

    async def scenario() -> list[ApiKey | None]:
        cache = ApiKeyCache(keys, failures=FailedCheckBudget(burst=2, per_second=0.001))  # type: ignore[arg-type]
        return await asyncio.gather(*(cache.authenticate(TOKEN, "10.0.0.1") for _ in range(50)))

    assert run(scenario()) == [READER] * 50
    assert keys.calls == 1
