"""The API's calls to the config store run in a worker thread, behind a circuit breaker.

An unreachable PostgreSQL costs one call up to the connect timeout; the calls of the next few
seconds then fail at once instead of each waiting that long again. So a request never waits twice
(its key check, then its route's query), and worker threads do not pile up during an outage.
Only an unreachable database opens the breaker: a missing segment or a stale version says nothing
about PostgreSQL's health.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from resources.circuit_breaker import CircuitOpen, Circuits
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


def _is_unreachable(error: Exception) -> bool:
    return isinstance(error, DATABASE_UNREACHABLE)


class ConfigStoreGuard:
    def __init__(self, circuits: Circuits | None = None, *, open_seconds: float = DEFAULT_OPEN_SECONDS) -> None:
        circuits = circuits or Circuits(open_seconds=open_seconds)
        self._circuit = circuits.get(
            POSTGRESQL_CIRCUIT, failures=FAILURES_TO_OPEN, open_seconds=open_seconds, is_failure=_is_unreachable
        )

    async def run(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`call(*args, **kwargs)` in a worker thread; `ConfigStoreUnavailable` when PostgreSQL cannot answer."""
        in_thread = functools.partial(anyio.to_thread.run_sync, functools.partial(call, *args, **kwargs))
        try:
            return await self._circuit.call(in_thread)
        except CircuitOpen as open_circuit:
            raise ConfigStoreUnavailable(
                "the config store (PostgreSQL) is unavailable; try again", open_circuit.retry_after_seconds
            ) from None
        except DATABASE_UNREACHABLE as error:
            raise ConfigStoreUnavailable(
                f"the config store (PostgreSQL) is unavailable ({type(error).__name__}); try again", 1
            ) from error
