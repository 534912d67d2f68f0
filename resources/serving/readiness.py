"""Readiness: can this process reach Elasticsearch, Redis and PostgreSQL right now?

Each check has a short timeout of its own and they run together, so `/readyz` answers within
about one timeout even with every dependency down. Callers share one round of checks and its
result for a second: probes at any rate cost the servers at most one round a second per process
(129 probes a second, each checking all three, once tripled other clients' latency).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import anyio.to_thread
from elasticsearch import AsyncElasticsearch
from sqlalchemy import Engine, text

from resources.redis_clients import AsyncRedis

CHECK_TIMEOUT_SECONDS = 1.0
RESULT_SECONDS = 1.0  # how long a round's result answers, counted from when it began


class Readiness:
    def __init__(
        self, es: AsyncElasticsearch, redis: AsyncRedis, database: Engine, coordination: AsyncRedis | None = None
    ) -> None:
        self._es = es
        self._redis = redis
        self._database = database
        self._coordination = coordination  # checked when the coordination keys have a Redis of their own
        self._last: tuple[float, dict[str, str]] | None = None  # when the round began, its result
        self._round: asyncio.Task[dict[str, str]] | None = None

    async def _elasticsearch(self) -> None:
        health = await self._es.options(request_timeout=CHECK_TIMEOUT_SECONDS, max_retries=0).cluster.health(
            timeout=f"{int(CHECK_TIMEOUT_SECONDS * 1000)}ms"
        )
        if health["status"] == "red":
            raise RuntimeError("cluster health is red")

    async def _redis_ping(self) -> None:
        await self._redis.ping()

    def _select_one(self) -> None:
        with self._database.connect() as connection:
            connection.execute(text("SELECT 1"))

    async def _postgresql(self) -> None:
        await anyio.to_thread.run_sync(self._select_one)

    async def check(self) -> dict[str, str]:
        """Dependency -> "ok" or why it is not ready, from a round begun at most a second ago."""
        if self._last is not None and time.monotonic() - self._last[0] < RESULT_SECONDS:
            return self._last[1]
        if self._round is None or self._round.done():
            self._round = asyncio.create_task(self._check_all())
        return await asyncio.shield(self._round)  # a caller that gives up does not cancel the others' round

    async def _check_all(self) -> dict[str, str]:
        began = time.monotonic()
        checks: dict[str, Callable[[], Awaitable[None]]] = {
            "elasticsearch": self._elasticsearch,
            "redis": self._redis_ping,
            "postgresql": self._postgresql,
        }
        if self._coordination is not None:
            checks["redis_coordination"] = self._coordination.ping

        async def run(check: Callable[[], Awaitable[None]]) -> str:
            try:
                await asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS)
                return "ok"
            except TimeoutError:
                return f"no answer within {CHECK_TIMEOUT_SECONDS:.0f}s"
            except Exception as error:  # any failure means not ready; the type only: /readyz needs no key
                return f"failed ({type(error).__name__})"

        results = await asyncio.gather(*(run(c) for c in checks.values()))
        self._last = (began, dict(zip(checks, results)))
        return self._last[1]
