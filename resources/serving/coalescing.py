"""Lookups that miss the cache at the same moment share one search.

A search for many customers costs Elasticsearch far less per customer than one search each
(bench_api: a batch of 100 answered at ~17,000 customers/s where single misses peaked at ~1,000/s),
and misses come in bursts: a cold start, or the first seconds after a type's alias switched, when
every customer asked needs that type read again. So, per set of aliases to read, at most
`in_flight` searches run at once; the misses that arrive meanwhile wait, and go together in the
next one, up to `max_ids` customers. A lone miss goes at once: coalescing costs nothing when idle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from resources.serving.served_indices import Held

Search = Callable[[list[str], tuple[str, ...]], Awaitable[dict[str, Held]]]


@dataclass
class _Waiter:
    customer_ids: list[str]
    answer: asyncio.Future[dict[str, Held]]


class MissCoalescer:
    def __init__(self, search: Search, *, max_ids: int, in_flight: int = 1) -> None:
        self._search = search  # (customer ids, segment types or () for all) -> held, per customer
        self._max_ids = max_ids
        self._in_flight = in_flight
        self._waiting: dict[tuple[str, ...], list[_Waiter]] = {}
        self._running: dict[tuple[str, ...], int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def running(self) -> list[asyncio.Task[None]]:
        """The searches in flight (with the waiters they will serve next)."""
        return list(self._tasks)

    async def memberships_of(self, customer_ids: list[str], segment_types: tuple[str, ...] = ()) -> dict[str, Held]:
        """What `search` answers for these customers, read in a search shared with other callers'."""
        if len(customer_ids) > self._max_ids // 2:  # a batch already: gains nothing by waiting for others
            return await self._search(customer_ids, segment_types)
        waiter = _Waiter(customer_ids, asyncio.get_running_loop().create_future())
        # A caller gone (its client disconnected) must not leave an error unread in the log.
        waiter.answer.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._waiting.setdefault(segment_types, []).append(waiter)
        if self._running.get(segment_types, 0) < self._in_flight:
            self._running[segment_types] = self._running.get(segment_types, 0) + 1
            task = asyncio.get_running_loop().create_task(self._drain(segment_types))
            self._tasks.add(task)  # the loop keeps only a weak reference to a task
            task.add_done_callback(self._tasks.discard)
        # Shielded: a caller cancelled leaves the shared search, and the others' answers, alone.
        return await asyncio.shield(waiter.answer)

    async def _drain(self, segment_types: tuple[str, ...]) -> None:
        try:
            while waiters := self._take(segment_types):
                customer_ids = list(dict.fromkeys(c for waiter in waiters for c in waiter.customer_ids))
                try:
                    held = await self._search(customer_ids, segment_types)
                except Exception as error:  # noqa: BLE001 - each caller gets the search's own error
                    for waiter in waiters:
                        if not waiter.answer.done():
                            waiter.answer.set_exception(error)
                    continue
                for waiter in waiters:
                    if not waiter.answer.done():
                        waiter.answer.set_result({c: held[c] for c in waiter.customer_ids})
        finally:
            self._running[segment_types] -= 1

    def _take(self, segment_types: tuple[str, ...]) -> list[_Waiter]:
        """The waiters that fit in one search, oldest first (always at least one)."""
        waiting = self._waiting.get(segment_types, [])
        taken, ids = 0, 0
        while taken < len(waiting) and (taken == 0 or ids + len(waiting[taken].customer_ids) <= self._max_ids):
            ids += len(waiting[taken].customer_ids)
            taken += 1
        self._waiting[segment_types] = waiting[taken:]
        return waiting[:taken]
