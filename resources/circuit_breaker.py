"""The API's circuit breakers, one per dependency, in one place.

A dependency that keeps failing is skipped for a while (open) instead of making every request wait
for its timeout; once the open period is over, calls go through again (half-open) and the first
outcome closes or reopens it. Built on the `circuitbreaker` library: only this module knows it.

Two rules of our own on top: an outcome counts only if the circuit has not changed state since its
call began (a slow success must not close a circuit that opened meanwhile, nor a slow failure
prolong its open time), and a cancelled call (a client gone, our own deadline) is no outcome at all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from circuitbreaker import CircuitBreaker

T = TypeVar("T")
# circuit name, then its new state: "closed", "half_open" or "open"
StateListener = Callable[[str, str], None]


class CircuitOpen(Exception):
    def __init__(self, circuit: str, retry_after_seconds: int) -> None:
        super().__init__(f"circuit {circuit} is open")
        self.circuit = circuit
        self.retry_after_seconds = retry_after_seconds


def _always(_: Exception) -> bool:
    return True


class Circuit:
    def __init__(
        self,
        name: str,
        *,
        failures: int,
        open_seconds: float,
        is_failure: Callable[[Exception], bool] = _always,
        on_state: StateListener | None = None,
    ) -> None:
        self.name = name
        self._breaker = CircuitBreaker(
            failure_threshold=failures,
            recovery_timeout=open_seconds,
            expected_exception=lambda _, error: is_failure(error),
            name=name,
        )
        self._on_state = on_state
        self._reported: str | None = None
        self._epoch = 0  # bumped at every change of state
        self._report()

    @property
    def state(self) -> str:
        return self._breaker.state

    def retry_after_seconds(self) -> int:
        return max(1, int(self._breaker.open_remaining))

    async def call(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call()`, unless the circuit is open: then `CircuitOpen`, without calling."""
        self._report()
        if self._breaker.opened:
            raise CircuitOpen(self.name, self.retry_after_seconds())
        began = self._epoch
        try:
            result = await call()
        except Exception as error:
            self._record(began, error)
            raise
        self._record(began, None)
        return result

    def _record(self, began: int, error: Exception | None) -> None:
        if began == self._epoch:
            # The library's own bookkeeping, through its context-manager exit: counts a failure
            # (opening at the threshold) or, on success, closes and resets the count.
            self._breaker.__exit__(type(error) if error else None, error, None)
            self._report()

    def _report(self) -> None:
        state = self._breaker.state
        if state != self._reported:
            self._epoch += 1
            if self._on_state is not None:
                self._on_state(self.name, state)
        self._reported = state


class Circuits:
    """The circuits of one process, by name: each made once, with the defaults unless told otherwise."""

    def __init__(self, *, failures: int = 5, open_seconds: float = 5.0, on_state: StateListener | None = None) -> None:
        self.failures = failures
        self.open_seconds = open_seconds
        self._on_state = on_state
        self._circuits: dict[str, Circuit] = {}

    def get(
        self,
        name: str,
        *,
        failures: int | None = None,
        open_seconds: float | None = None,
        is_failure: Callable[[Exception], bool] = _always,
    ) -> Circuit:
        circuit = self._circuits.get(name)
        if circuit is None:
            circuit = self._circuits[name] = Circuit(
                name,
                failures=failures or self.failures,
                open_seconds=open_seconds or self.open_seconds,
                is_failure=is_failure,
                on_state=self._on_state,
            )
        return circuit
