"""The API's calls to the config store run in a worker thread, behind a circuit breaker.

An unreachable PostgreSQL costs one call up to the connect timeout; the calls of the next few
seconds then fail at once instead of each waiting that long again. So a request never waits twice
(its key check, then its route's query), and worker threads do not pile up during an outage.
Only an unreachable database opens the breaker: a missing segment or a stale version says nothing
about PostgreSQL's health.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi.concurrency import run_in_threadpool
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from resources.names import POSTGRESQL_CIRCUIT

T = TypeVar("T")
# Connection refused or timed out, lost, or no pool connection free in time.
DATABASE_UNREACHABLE = (OperationalError, InterfaceError, PoolTimeout)
# One failure is enough to open: a second attempt right after a connect timeout would time out too.
FAILURES_TO_OPEN = 1
DEFAULT_OPEN_SECONDS = 5.0


class ConfigStoreUnavailable(Exception):
    def __init__(self, message: str, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


def _is_healthy_answer(error: BaseException) -> bool:
    return not isinstance(error, DATABASE_UNREACHABLE)


class ConfigStoreGuard:
    def __init__(self, breakers: AsyncCircuitBreakerFactory | None = None, *, open_seconds: float = DEFAULT_OPEN_SECONDS) -> None:
        self._breakers = breakers or AsyncCircuitBreakerFactory(default_ttl=open_seconds)
        self._open_seconds = open_seconds
        self._breaker: Any = None

    async def run(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`call(*args, **kwargs)` in a worker thread; `ConfigStoreUnavailable` when PostgreSQL cannot answer."""
        if self._breaker is None:
            self._breaker = await self._breakers.get_breaker(
                POSTGRESQL_CIRCUIT, threshold=FAILURES_TO_OPEN, ttl=self._open_seconds, exclude=[(Exception, _is_healthy_answer)]
            )
        try:
            async with self._breaker:
                return await run_in_threadpool(call, *args, **kwargs)
        except OpenedState as open_state:
            retry_after = max(1, math.ceil(open_state.opened_at + self._open_seconds - time.time()))
            raise ConfigStoreUnavailable("the config store (PostgreSQL) is unavailable; try again", retry_after) from None
        except DATABASE_UNREACHABLE as error:
            raise ConfigStoreUnavailable(
                f"the config store (PostgreSQL) is unavailable ({type(error).__name__}); try again", 1
            ) from error
