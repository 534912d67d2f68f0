"""The API's circuit breakers (resources/circuit_breaker.py): open, half-open, and our two rules."""

from __future__ import annotations

import asyncio

import pytest

from resources.circuit_breaker import Circuit, CircuitOpen


class Down(Exception):
    pass


class NotOurs(Exception):
    pass


async def fail() -> None:
    raise Down()


async def ok() -> str:
    return "ok"


def run(coroutine):
    return asyncio.run(coroutine)


def test_it_opens_at_the_threshold_and_then_calls_nothing() -> None:
    states: list[str] = []
    circuit = Circuit("es", failures=2, open_seconds=30, on_state=lambda _, s: states.append(s))
    calls = 0

    async def counted() -> None:
        nonlocal calls
        calls += 1
        raise Down()

    async def scenario() -> None:
        for _ in range(2):
            with pytest.raises(Down):
                await circuit.call(counted)
        with pytest.raises(CircuitOpen) as opened:
            await circuit.call(counted)
        assert 29 <= opened.value.retry_after_seconds <= 30

    run(scenario())
    assert calls == 2 and circuit.state == "open"
    assert states == ["closed", "open"]


def test_errors_that_are_not_failures_leave_it_closed() -> None:
    circuit = Circuit("es", failures=1, open_seconds=30, is_failure=lambda e: not isinstance(e, NotOurs))

    async def not_ours() -> None:
        raise NotOurs()

    async def scenario() -> None:
        for _ in range(3):
            with pytest.raises(NotOurs):
                await circuit.call(not_ours)

    run(scenario())
    assert circuit.state == "closed"


def test_a_cancelled_call_is_no_outcome() -> None:
    circuit = Circuit("es", failures=2, open_seconds=30)

    async def scenario() -> None:
        with pytest.raises(Down):
            await circuit.call(fail)
        hanging = asyncio.ensure_future(circuit.call(lambda: asyncio.sleep(10)))
        await asyncio.sleep(0.01)
        hanging.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hanging
        with pytest.raises(Down):
            await circuit.call(fail)  # the second failure in a row: the cancellation did not reset the count

    run(scenario())
    assert circuit.state == "open"


def test_a_slow_success_that_began_before_it_opened_does_not_close_it() -> None:
    circuit = Circuit("es", failures=1, open_seconds=30)

    async def scenario() -> None:
        release = asyncio.Event()

        async def slow() -> str:
            await release.wait()
            return "late"

        pending = asyncio.ensure_future(circuit.call(slow))
        await asyncio.sleep(0.01)
        with pytest.raises(Down):
            await circuit.call(fail)  # opens it
        release.set()
        assert await pending == "late"

    run(scenario())
    assert circuit.state == "open"


def test_after_the_open_time_the_first_outcome_decides() -> None:
    circuit = Circuit("es", failures=1, open_seconds=0.05)

    async def scenario() -> None:
        with pytest.raises(Down):
            await circuit.call(fail)
        assert circuit.state == "open"
        await asyncio.sleep(0.08)
        assert circuit.state == "half_open"
        with pytest.raises(Down):
            await circuit.call(fail)
        assert circuit.state == "open"  # reopened by the probe's failure
        await asyncio.sleep(0.08)
        assert await circuit.call(ok) == "ok"
        assert circuit.state == "closed"

    run(scenario())
