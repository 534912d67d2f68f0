"""Sustained load on the real API server while calculations are published and rolled back: every
answer checked, latencies kept. Shared by tests/reliability/test_sustained_load.py (a minute, in
CI) and bench/soak.py (as long as asked).

The API runs as `segmentation api` (uvicorn, uvloop, httptools) in its own process on the
namespace's settings; the load comes from an asyncio/httpx loop in this process (its figures
include the client's own overhead); publications are the index and alias assets through Dagster,
rollbacks `segmentation rollback`'s code, both in this process, on a timer.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from resources.settings import PROJECT_ROOT, Settings
from segmentation_assets.rollback import roll_back_with_settings
from tests.integration.publishing import TYPE, failure_text, writer
from tests.reliability.answers import Calculation, customers, overlapping_segments
from tests.reliability.platform import run_ingestion

SWITCH_WINDOW = 2.0  # after an alias moves, the previous calculation may answer this long (generation refresh + slack)
SEGMENTS = [f"seg-{n}" for n in range(5)]


@dataclass(frozen=True)
class Switch:
    what: str
    started: float
    ended: float
    before: Calculation
    after: Calculation


@dataclass
class Outcome:
    at: float
    kind: str  # lookup, batch, membership
    seconds: float
    status: int  # 0: no answer at all
    # (customer_id, segment_id or "", what the API answered) for each answer in the response
    answers: list[tuple[str, str, Any]] = field(default_factory=list)
    error: str = ""  # why there was no answer (status 0): the exception, so that a rare one can be told


@dataclass
class LoadReport:
    requests: int
    seconds: float
    errors: int
    wrong: int
    checked_answers: int
    p50_ms: float
    p99_ms: float
    by_kind: dict[str, tuple[int, float, float]]  # kind -> (requests, p50 ms, p99 ms)
    switches: list[str]
    examples: list[str]

    def line(self) -> str:
        kinds = ", ".join(f"{k} {n} (p50 {p50:.1f} / p99 {p99:.1f} ms)" for k, (n, p50, p99) in sorted(self.by_kind.items()))
        return (
            f"sustained load: {self.requests} requests in {self.seconds:.0f} s ({self.requests / self.seconds:.0f}/s), "
            f"p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, {self.errors} errors, {self.wrong} wrong of "
            f"{self.checked_answers} answers checked; {'; '.join(self.switches)}; {kinds}"
        )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def settings_environment(settings: Settings) -> dict[str, str]:
    """The settings as the `SEGMENTATION_*` variables a separate process reads them from."""
    values = settings.model_dump(mode="json")
    return {f"SEGMENTATION_{name.upper()}": str(value) for name, value in values.items() if value is not None}


class ApiProcess:
    """`segmentation api` in a process of its own, on these settings."""

    def __init__(self, settings: Settings, workers: int, log_file: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, **settings_environment(settings), "SEGMENTATION_LOG_FORMAT": "json"}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self._log = log_file.open("w")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "api", "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers)],
            cwd=PROJECT_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            assert self._process.poll() is None, f"the API exited; see {log_file}"
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"the API did not become ready; see {log_file}"
            time.sleep(0.2)

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(10)
        self._log.close()


def _segments(segments: list[dict[str, Any]]) -> tuple[tuple[str, str], ...]:
    return tuple((s["segment_id"], s["calculated_at"]) for s in segments)


async def _load(
    base_url: str, headers: dict[str, str], population: list[str], concurrency: int, stop: threading.Event, outcomes: list[Outcome]
) -> None:
    """Lookups (70%: half among a hot set, cached), batches of 20 (20%) and membership checks (10%),
    appended to `outcomes` as they come."""
    hot = population[: max(1, len(population) // 10)]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient, rng: random.Random) -> None:
        while not stop.is_set():
            roll = rng.random()
            started = time.monotonic()
            outcome = Outcome(0.0, "", 0.0, 0)
            try:
                if roll < 0.7:
                    customer = rng.choice(hot if rng.random() < 0.5 else population)
                    outcome.kind = "lookup"
                    response = await client.get(f"/v1/customers/{customer}/segments")
                    if response.status_code == 200:
                        body = response.json()
                        outcome.answers = [(customer, "", _segments(body["segments"]))]
                elif roll < 0.9:
                    batch = rng.sample(population, 20)
                    outcome.kind = "batch"
                    response = await client.post("/v1/customers/segments:batch", json={"customer_ids": batch})
                    if response.status_code == 200:
                        results = response.json()["results"]
                        outcome.answers = [(c, "", _segments(results[c]) if c in results else None) for c in batch]
                else:
                    customer, segment = rng.choice(population), rng.choice(SEGMENTS)
                    outcome.kind = "membership"
                    response = await client.get(f"/v1/segments/{segment}/members/{customer}")
                    if response.status_code == 200:
                        body = response.json()
                        outcome.answers = [(customer, segment, (body["member"], body["calculated_at"]))]
                outcome.status = response.status_code
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
                outcome.status = 0
                outcome.error = f"{type(error).__name__}: {error}"[:200]
            outcome.at = time.monotonic()
            outcome.seconds = outcome.at - started
            outcomes.append(outcome)

    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=10, limits=limits) as client:
        await asyncio.gather(*(worker(client, random.Random(n)) for n in range(concurrency)))


def _expected(calculation: Calculation, customer: str, segment: str) -> Any:
    return calculation.membership(segment, customer) if segment else calculation.answer(customer)


def judge(outcomes: list[Outcome], first: Calculation, switches: list[Switch]) -> tuple[int, int, int, list[str]]:
    """(errors, wrong answers, answers checked, examples of what went wrong)."""
    errors = wrong = checked = 0
    examples: list[str] = []
    for outcome in outcomes:
        if outcome.status != 200:
            errors += 1
            if len(examples) < 10:
                examples.append(f"{outcome.kind}: status {outcome.status} {outcome.error}".rstrip())
            continue
        allowed = [first]
        for switch in switches:
            if outcome.at >= switch.started:
                allowed = [switch.before, switch.after] if outcome.at < switch.ended + SWITCH_WINDOW else [switch.after]
        for customer, segment, answer in outcome.answers:
            checked += 1
            if answer not in [_expected(c, customer, segment) for c in allowed]:
                wrong += 1
                if len(examples) < 10:
                    examples.append(f"{outcome.kind} {customer} {segment}: {answer!r}, allowed {[c.partition_key for c in allowed]}")
    return errors, wrong, checked, examples


def percentiles(seconds: list[float]) -> tuple[float, float]:
    if not seconds:
        return 0.0, 0.0
    p50, p99 = np.percentile(np.array(seconds) * 1000, [50, 99])
    return float(p50), float(p99)


def run(
    settings: Settings,
    headers: dict[str, str],
    *,
    seconds: float,
    switch_every: float,
    population: int,
    concurrency: int,
    workers: int,
    log_dir: Path,
    progress: Any = None,
) -> LoadReport:
    """Publishes a first calculation, serves it under load, and every `switch_every` seconds either
    publishes a new calculation or rolls the alias back, alternately, until `seconds` have passed."""
    people = customers(population)
    first = Calculation.write(settings, "2026-11-01", overlapping_segments(1, population))
    published = run_ingestion(settings, first.partition_key)
    assert published.success, failure_text(published)
    by_partition = {first.partition_key: first}
    current = first
    switches: list[Switch] = []
    api = ApiProcess(settings, workers, log_dir / "api.log")
    stop = threading.Event()
    outcomes: list[Outcome] = []
    loader = threading.Thread(target=lambda: asyncio.run(_load(api.base_url, headers, people, concurrency, stop, outcomes)))
    started = time.monotonic()
    loader.start()
    try:
        step = 0
        while (next_at := started + switch_every * (step + 0.75)) < started + seconds - SWITCH_WINDOW:
            time.sleep(max(0.0, next_at - time.monotonic()))
            begun = time.monotonic()
            if step % 2 == 0:  # a new calculation: the ingestion ends in an alias switch
                partition = f"2026-11-{step // 2 + 2:02d}"
                calculation = Calculation.write(settings, partition, overlapping_segments(step + 2, population))
                result = run_ingestion(settings, partition)
                assert result.success, failure_text(result)
                by_partition[partition] = calculation
                what = f"ingestion of {partition} ({time.monotonic() - begun:.1f} s)"
            else:  # back to the calculation before
                move = roll_back_with_settings(settings, TYPE, None)
                calculation = by_partition[writer(settings).segment_index(move.served).partition_key]
                what = f"rollback to {calculation.partition_key}"
            switches.append(Switch(what, begun, time.monotonic(), current, calculation))
            current = calculation
            if progress:
                progress(f"{time.monotonic() - started:5.0f} s  {what}: {len(outcomes)} requests so far")
            step += 1
        time.sleep(max(0.0, started + seconds - time.monotonic()))
    finally:
        stop.set()
        loader.join(60)
        api.stop()
    elapsed = time.monotonic() - started
    errors, wrong, checked, examples = judge(outcomes, first, switches)
    p50, p99 = percentiles([o.seconds for o in outcomes])
    by_kind = {}
    for kind in {o.kind for o in outcomes}:
        kind_p50, kind_p99 = percentiles([o.seconds for o in outcomes if o.kind == kind])
        by_kind[kind] = (sum(1 for o in outcomes if o.kind == kind), kind_p50, kind_p99)
    return LoadReport(len(outcomes), elapsed, errors, wrong, checked, p50, p99, by_kind, [s.what for s in switches], examples)
