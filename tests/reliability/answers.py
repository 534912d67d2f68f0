"""Calculations whose every answer is known, and a poller that checks each answer the API gives
while a fault happens: right (one of the calculations allowed at that moment), wrong, or refused.

A wrong answer is a 200 whose segments are not exactly those of a calculation that was served
(a mix of two, a half-loaded one, a stale one after the switch had shown, anything else).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import httpx

from resources.settings import Settings
from tests.integration.results_folder import write_results
from tests.integration.publishing import TYPE


@dataclass(frozen=True)
class Calculation:
    """One calculation of `new_customers` for a partition: segment -> members, and its manifest."""

    partition_key: str
    segments: dict[str, list[str]]
    manifest: dict[str, Any]

    @classmethod
    def write(cls, settings: Settings, partition_key: str, segments: dict[str, list[str]]) -> Calculation:
        return cls(partition_key, segments, write_results(settings.lake_uri, TYPE, partition_key, segments))

    @cached_property
    def members(self) -> dict[str, frozenset[str]]:
        return {s: frozenset(m) for s, m in sorted(self.segments.items())}

    @property
    def calculated_at(self) -> str:
        return str(self.manifest["calculated_at"])

    def answer(self, customer_id: str) -> tuple[tuple[str, str], ...]:
        """What a lookup must show: (segment_id, calculated_at) of every segment holding the customer."""
        return tuple((s, self.calculated_at) for s, members in self.members.items() if customer_id in members)

    def membership(self, segment_id: str, customer_id: str) -> tuple[bool, str]:
        """What `GET /v1/segments/{id}/members/{customer_id}` must show: member, calculated_at."""
        return customer_id in self.members[segment_id], self.calculated_at


def customers(count: int) -> list[str]:
    return [f"c{n:04d}" for n in range(count)]


def overlapping_segments(seed: int, population: int = 400) -> dict[str, list[str]]:
    """Five segments whose members shift with the seed, so that two seeds disagree on most customers."""
    people = customers(population)
    return {f"seg-{n}": people[(seed * 37 + n * 53) % 97 :: n + 2] for n in range(5)}


def answer_of(body: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    # The API sends calculated_at as the index holds it; compare it as the manifest wrote it.
    return tuple((s["segment_id"], s["calculated_at"]) for s in body["segments"])


@dataclass
class Observation:
    at: float  # time.monotonic() when the answer arrived
    customer_id: str
    status: int
    answer: tuple[tuple[str, str], ...] | None
    seconds: float


@dataclass
class Tally:
    right: int = 0
    wrong: int = 0
    refused: int = 0  # 503: failed fast, as the guarantees allow when the answer is not cached
    other: int = 0  # any other status, or no answer at all: always a failure
    wrong_examples: list[Observation] = field(default_factory=list)

    @property
    def served(self) -> int:
        return self.right + self.wrong


def judge(observations: Iterable[Observation], allowed_at: Any) -> Tally:
    """`allowed_at(moment)` -> the calculations a lookup answered at that moment may show."""
    tally = Tally()
    for seen in observations:
        if seen.status == 200:
            allowed = {c.answer(seen.customer_id) for c in allowed_at(seen.at)}
            if seen.answer in allowed:
                tally.right += 1
            else:
                tally.wrong += 1
                tally.wrong_examples.append(seen)
        elif seen.status == 503:
            tally.refused += 1
        else:
            tally.other += 1
            tally.wrong_examples.append(seen)
    return tally


class Poller:
    """Looks customers up, one after the other, in a thread, until stopped; keeps every answer."""

    def __init__(self, base_url: str, headers: dict[str, str], customer_ids: list[str]) -> None:
        self._client = httpx.Client(base_url=base_url, headers=headers, timeout=10)
        self._customers = customer_ids
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.observations: list[Observation] = []

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            customer_id = self._customers[n % len(self._customers)]
            n += 1
            started = time.monotonic()
            try:
                response = self._client.get(f"/v1/customers/{customer_id}/segments")
                status = response.status_code
                answer = answer_of(response.json()) if status == 200 else None
            except httpx.HTTPError:
                status, answer = 0, None
            self.observations.append(Observation(time.monotonic(), customer_id, status, answer, time.monotonic() - started))

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)
        self._client.close()

    def wait_for(self, count: int, timeout: float = 30) -> None:
        """Until `count` more answers arrived: proof the API kept answering through a step."""
        target = len(self.observations) + count
        deadline = time.monotonic() + timeout
        while len(self.observations) < target:
            assert time.monotonic() < deadline, f"the API answered only {len(self.observations)} lookups"
            time.sleep(0.01)
