"""Calls of the same moment share one: misses share a search, cache reads share an MGET.

A search for many customers costs Elasticsearch far less per customer than one search each
(bench_api: a batch of 100 answered at ~17,000 customers/s where single misses peaked at ~1,000/s),
and a round trip costs the API and Redis about the same for one key as for a hundred. So, per group
(for searches, the set of types to read), at most `in_flight` calls run at once; the ids asked for
meanwhile wait, and go together in the next call, up to `max_ids`. A lone call goes at once:
sharing costs nothing when idle. Misses also come in bursts (a cold start, the first seconds after
a switch), and Elasticsearch then never sees more searches at once than there are API processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Waiter(Generic[T]):
    ids: list[str]
    answer: asyncio.Future[dict[str, T]]


class Coalescer(Generic[T]):
    def __init__(
        self, call: Callable[[list[str], tuple[str, ...]], Awaitable[dict[str, T]]], *, max_ids: int, in_flight: int = 1
    ) -> None:
        self._call = call  # (ids, group) -> id -> its answer (an id it leaves out has none)
        self._max_ids = max_ids
        self._in_flight = in_flight
        self._waiting: dict[tuple[str, ...], list[_Waiter[T]]] = {}
        self._running: dict[tuple[str, ...], int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def running(self) -> list[asyncio.Task[None]]:
        """The calls in flight (with the waiters they will serve next)."""
        return list(self._tasks)

    async def call(self, ids: list[str], group: tuple[str, ...] = ()) -> dict[str, T]:
        """What `call` answers for these ids, in a call shared with other callers' of the same group."""
        if len(ids) > self._max_ids // 2:  # a batch already: gains nothing by waiting for others
            return await self._call(ids, group)
        waiter: _Waiter[T] = _Waiter(ids, asyncio.get_running_loop().create_future())
        # A caller gone (its client disconnected) must not leave an error unread in the log.
        waiter.answer.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._waiting.setdefault(group, []).append(waiter)
        if self._running.get(group, 0) < self._in_flight:
            self._running[group] = self._running.get(group, 0) + 1
            task = asyncio.get_running_loop().create_task(self._drain(group))
            self._tasks.add(task)  # the loop keeps only a weak reference to a task
            task.add_done_callback(self._tasks.discard)
        # Shielded: a caller cancelled leaves the shared call, and the others' answers, alone.
        return await asyncio.shield(waiter.answer)

    async def _drain(self, group: tuple[str, ...]) -> None:
        try:
            while waiters := self._take(group):
                ids = list(dict.fromkeys(i for waiter in waiters for i in waiter.ids))
                try:
                    answers = await self._call(ids, group)
                except Exception as error:  # noqa: BLE001 - each caller gets the call's own error
                    for waiter in waiters:
                        if not waiter.answer.done():
                            waiter.answer.set_exception(error)
                    continue
                for waiter in waiters:
                    if not waiter.answer.done():
                        waiter.answer.set_result({i: answers[i] for i in waiter.ids if i in answers})
        finally:
            self._running[group] -= 1

    def _take(self, group: tuple[str, ...]) -> list[_Waiter[T]]:
        """The waiters that fit in one call, oldest first (always at least one)."""
        waiting = self._waiting.get(group, [])
        taken, ids = 0, 0
        while taken < len(waiting) and (taken == 0 or ids + len(waiting[taken].ids) <= self._max_ids):
            ids += len(waiting[taken].ids)
            taken += 1
        self._waiting[group] = waiting[taken:]
        return waiting[:taken]
