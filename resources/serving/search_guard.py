"""Every Elasticsearch request of the API runs inside a time budget and behind a circuit breaker.

A request that fails, times out, finds the breaker open or answers from only some of its shards
raises `SearchUnavailable`, which the API answers with 503 and `Retry-After` (fail fast
rather than hang). The client's own retries (`max_retries`) happen inside the budget, so a retry
never makes a request slower than it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import elastic_transport
from elasticsearch import ApiError, AsyncElasticsearch
from elasticsearch.serializer import OrjsonSerializer

from resources.circuit_breaker import CircuitOpen, Circuits
from resources.names import ELASTICSEARCH_CIRCUIT, POSTGRESQL_CIRCUIT, REDIS_CIRCUIT
from resources.serving.metrics import BREAKER_STATE, BREAKER_STATES, SEARCH_LATENCY
from resources.settings import elasticsearch_hosts

T = TypeVar("T")


class SearchUnavailable(Exception):
    def __init__(self, message: str, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class PartialAnswer(Exception):
    """A search that some shards failed: its hits are not the whole answer, so none is served
    (nor cached for the generation)."""

    def __init__(self, failed_shards: int) -> None:
        super().__init__(f"{failed_shards} shards failed")
        self.failed_shards = failed_shards


def _failed_shards(result: Any) -> int:
    body = getattr(result, "body", None)
    if not isinstance(body, dict):
        return 0
    return int((body.get("_shards") or {}).get("failed") or 0)


def _is_client_error(error: ApiError) -> bool:
    """4xx answers (a missing index, a bad query) say nothing about the cluster's health."""
    return 400 <= error.meta.status < 500 and error.meta.status != 429


def _is_cluster_failure(error: Exception) -> bool:
    return not (isinstance(error, ApiError) and _is_client_error(error))


def search_client(url: str, budget_seconds: float) -> AsyncElasticsearch:
    # One quick retry on a dropped connection; never more than the budget in total (see `run`).
    return AsyncElasticsearch(
        elasticsearch_hosts(url),  # one URL, or several nodes' (a node that fails is left a while)
        serializer=OrjsonSerializer(),  # a batch's answer is ~100 KB of JSON: the stdlib parser took a tenth of the CPU
        request_timeout=budget_seconds,
        max_retries=1,
        retry_on_timeout=False,
        connections_per_node=64,  # the default 10 queues requests under load
    )


def breaker_factory(failures: int, open_seconds: float) -> Circuits:
    """The circuits of one process, one per dependency; their states go to the breaker gauge."""

    def on_state(circuit: str, state: str) -> None:
        BREAKER_STATE.labels(circuit).set(BREAKER_STATES.get(state, 0))

    for circuit in (ELASTICSEARCH_CIRCUIT, REDIS_CIRCUIT, POSTGRESQL_CIRCUIT):  # shown from the start, not from first use
        BREAKER_STATE.labels(circuit).set(0)
    return Circuits(failures=failures, open_seconds=open_seconds, on_state=on_state)


class SearchGuard:
    def __init__(self, breakers: Circuits, *, budget_seconds: float, open_seconds: float) -> None:
        self._circuit = breakers.get(ELASTICSEARCH_CIRCUIT, open_seconds=open_seconds, is_failure=_is_cluster_failure)
        self._budget = budget_seconds

    @property
    def budget_seconds(self) -> float:
        return self._budget

    async def run(self, operation: str, call: Callable[[], Awaitable[T]], *, budget_seconds: float | None = None) -> T:
        budget = budget_seconds or self._budget
        started = time.perf_counter()
        outcome = "error"

        async def answered() -> T:
            async with asyncio.timeout(budget):
                result = await call()
            if failed := _failed_shards(result):
                raise PartialAnswer(failed)  # inside the breaker: failing shards are a sick cluster
            return result

        try:
            result = await self._circuit.call(answered)
            outcome = "ok"
            return result
        except CircuitOpen as open_circuit:
            outcome = "breaker_open"
            raise SearchUnavailable(
                "Elasticsearch is unavailable (circuit open); answers not in the cache cannot be served",
                open_circuit.retry_after_seconds,
            ) from None
        except PartialAnswer as partial:
            outcome = "partial"
            raise SearchUnavailable(f"Elasticsearch answered from part of the index only ({partial})", 1) from None
        except TimeoutError:
            outcome = "timeout"
            raise SearchUnavailable(f"Elasticsearch did not answer within {budget * 1000:.0f} ms", 1) from None
        except elastic_transport.TransportError as error:
            raise SearchUnavailable(f"Elasticsearch is unreachable ({type(error).__name__})", 1) from None
        except ApiError as error:
            if _is_client_error(error):
                outcome = "client_error"
                raise
            raise SearchUnavailable(f"Elasticsearch answered {error.meta.status}", 1) from None
        finally:
            SEARCH_LATENCY.labels(operation, outcome).observe(time.perf_counter() - started)
