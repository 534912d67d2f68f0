"""The guarantees end to end: the pipeline's publication (index and alias assets through Dagster) and the
API (a real HTTP server) together, while one thing breaks. A poller looks customers up the whole
time and every answer is judged against the calculations that may be served at that moment.

Outages are proxies between the API (or the ingestion) and the shared servers, never the servers
themselves. Each test adds a row to the fault table printed at the end of the run.

Where a fault is tested in depth elsewhere, this is the system-level view and the row says so:
ingestion alone in tests/integration/test_ingestion.py and test_ingestion_lock.py, serving alone in
tests/integration/test_serving_resilience.py.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import datetime
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from resources.config_store.api_keys import new_token
from resources.config_store.database import CONNECT_TIMEOUT_SECONDS
from resources.serving.lookups import WARM_SECONDS
from resources.settings import Settings
from tests.integration.es_proxy import FaultyElasticsearch
from tests.integration.publishing import failure_text, served, writer
from tests.integration.test_config_api import Keys
from tests.reliability.answers import Calculation, Observation, Poller, Tally, customers, judge, overlapping_segments
from tests.reliability.run_report import FaultRow, record
from tests.reliability.platform import Proxies, api_server, make_keys, run_ingestion

pytestmark = pytest.mark.integration

GENERATION_REFRESH = 1.0  # the default: a switch shows within a second
BREAKER_OPEN = 2.0  # 5 s by default; shorter here to keep the suite short
BUDGET = 0.5
# After a switch, the previous calculation may still answer this long: each process reads what is
# served every second, then gets ready for it (a catalog, its near cache) for at most WARM_SECONDS.
SWITCH_WINDOW = GENERATION_REFRESH + WARM_SECONDS
POPULATION = 400


@dataclass
class World:
    settings: Settings  # the namespace, as the pipeline sees it
    api_settings: Settings  # the same, with Elasticsearch, Redis and PostgreSQL behind the proxies
    proxies: Proxies
    keys: Keys
    first: Calculation
    state_dir: Path

    def serve(self, **overrides: object):
        return api_server(self.api_settings, self.state_dir, **overrides)


@pytest.fixture
def world(make_namespace: Callable[[], Settings], tmp_path: Path) -> Iterator[World]:
    settings = make_namespace().model_copy(
        update={
            "ingest_chunk_size": 20,
            "ingest_bulk_bytes": 4000,  # many small bulk requests: a fault lands mid-load
            "ingest_retry_backoff_seconds": 0.05,
            "ingest_max_retries": 2,
        }
    )
    first = Calculation.write(settings, "2026-11-20", overlapping_segments(1, POPULATION))
    result = run_ingestion(settings, first.partition_key)
    assert result.success, failure_text(result)
    proxies = Proxies.open(settings)
    api_settings = proxies.settings_for_api(settings).model_copy(
        update={
            "api_search_budget_seconds": 2.0,  # roomy: this machine is shared; tightened where under test
            "api_breaker_open_seconds": BREAKER_OPEN,
            "lookup_generation_refresh_seconds": GENERATION_REFRESH,
        }
    )
    yield World(settings, api_settings, proxies, make_keys(settings, "faults"), first, tmp_path / "state")
    proxies.close()


def switch_windows(before: list[Calculation], after: list[Calculation], started: float, switched: float) -> Callable[[float], list[Calculation]]:
    """What may answer: `before` until the ingestion starts, either while it runs and until the
    switch has shown in every cache, then only `after`."""

    def allowed(moment: float) -> list[Calculation]:
        if moment < started:
            return before
        if moment < switched + SWITCH_WINDOW:
            return before + after
        return after

    return allowed


def wait_until_answering(poller: Poller, calculation: Calculation, previous: Calculation, since: float, timeout: float = 30) -> float:
    """When the poller first saw `calculation` answer after `since`, for a customer whose answer
    it changes from `previous`'s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for seen in list(poller.observations):
            new = calculation.answer(seen.customer_id)
            if seen.at >= since and seen.status == 200 and seen.answer == new != previous.answer(seen.customer_id):
                return seen.at
        time.sleep(0.02)
    raise AssertionError(f"{calculation.partition_key} never answered")


def assert_no_wrong_answers(tally: Tally) -> None:
    assert tally.wrong == 0, f"{tally.wrong} wrong answers, e.g. {tally.wrong_examples[:3]}"
    assert tally.other == 0, f"{tally.other} answers neither right nor 503, e.g. {tally.wrong_examples[:3]}"


def p99(observations: list[Observation]) -> float:
    seconds = sorted(o.seconds for o in observations)
    return seconds[int(len(seconds) * 0.99) - 1] if seconds else 0.0


def test_elasticsearch_lost_mid_ingestion(world: World) -> None:
    second = Calculation.write(world.settings, "2026-11-21", overlapping_segments(2, POPULATION))
    faulty = FaultyElasticsearch(world.settings.elasticsearch_url)
    faulty.cut_at_bulk_request = 3  # the cluster goes away in the middle of the load
    with world.serve() as api, Poller(api.base_url, world.keys.as_reader, customers(POPULATION)) as poller:
        poller.wait_for(50)
        failed = run_ingestion(world.settings.model_copy(update={"elasticsearch_url": faulty.url}), second.partition_key)
        failed_at = time.monotonic()
        poller.wait_for(100)  # still answering, from the first calculation
        rerun = run_ingestion(world.settings, second.partition_key)
        switched = time.monotonic()
        shown = wait_until_answering(poller, second, world.first, switched - SWITCH_WINDOW)
        poller.wait_for(100)
    faulty.close()

    assert faulty.bulk_requests >= 3 and not failed.success
    message = failure_text(failed)
    assert "Elasticsearch became unreachable while loading" in message and "served alias is unchanged" in message
    assert rerun.success, failure_text(rerun)
    tally = judge(poller.observations, switch_windows([world.first], [second], failed_at, switched))
    assert_no_wrong_answers(tally)
    assert tally.refused == 0  # serving never depended on the ingestion's connection
    record(FaultRow(
        "Elasticsearch lost mid-ingestion (the ingestion's connection cut at its 3rd bulk request)",
        "run failed: 'Elasticsearch became unreachable while loading …; the served alias is unchanged'; "
        "lookups went on from the previous calculation; a rerun published the new one",
        tally.served, tally.wrong,
        f"{shown - failed_at:.1f} s from the failure to the new calculation answering (a rerun)",
        "test_faults.py::test_elasticsearch_lost_mid_ingestion; ingestion alone: "
        "tests/integration/test_ingestion.py::test_elasticsearch_lost_mid_load_fails_clearly_keeps_the_old_alias_and_a_rerun_succeeds",
    ))


def test_redis_down_while_serving_and_publishing(world: World) -> None:
    second = Calculation.write(world.settings, "2026-11-21", overlapping_segments(2, POPULATION))
    with world.serve(lookup_near_cache_entries=0) as api, Poller(api.base_url, world.keys.as_reader, customers(POPULATION)) as poller:
        poller.wait_for(POPULATION)  # every answer cached
        world.proxies.redis.refuse()
        down_at = time.monotonic()
        poller.wait_for(100)
        published = run_ingestion(world.settings, second.partition_key)  # the pipeline reaches Redis itself
        switched = time.monotonic()
        poller.wait_for(200)
        world.proxies.redis.forward()
        back_at = time.monotonic()
        cached_again = wait_for_cache_hits(api.state, timeout=BREAKER_OPEN + 10)
        poller.wait_for(100)

    assert published.success, failure_text(published)
    tally = judge(poller.observations, switch_windows([world.first], [second], down_at, switched))
    assert_no_wrong_answers(tally)
    assert tally.refused == 0  # Redis down: lookups still answer, from Elasticsearch
    during = [o for o in poller.observations if down_at <= o.at < back_at]
    record(FaultRow(
        "Redis down while serving (the API's path refused), a calculation published meanwhile",
        f"lookups answered from Elasticsearch, the new calculation at once (p99 {p99(during) * 1000:.0f} ms while down); "
        "the breaker skipped Redis; the cache came back by itself",
        tally.served, tally.wrong,
        f"{cached_again - back_at:.1f} s from Redis back to cache hits (the Redis breaker's open time, {BREAKER_OPEN:.0f} s here)",
        "test_faults.py::test_redis_down_while_serving_and_publishing; API alone: "
        "tests/integration/test_serving_resilience.py::test_with_redis_unreachable_lookups_stay_correct_and_the_errors_are_counted",
    ))


def wait_for_cache_hits(state, timeout: float) -> float:
    """When a lookup was next answered from Redis (the API's own counter of hits moved)."""
    from prometheus_client import REGISTRY

    def hits() -> float:
        return REGISTRY.get_sample_value("segmentation_cache_lookups_total", {"kind": "m", "result": "hit"}) or 0.0

    before = hits()
    deadline = time.monotonic() + timeout
    while hits() == before:
        assert time.monotonic() < deadline, "the cache was not used again after Redis came back"
        time.sleep(0.05)
    return time.monotonic()


def test_elasticsearch_down_while_serving(world: World) -> None:
    cached = customers(POPULATION)[:100]
    uncached = [f"new-{n:03d}" for n in range(100)]  # in no segment, and never asked before the outage
    second = Calculation.write(world.settings, "2026-11-21", overlapping_segments(2, POPULATION))
    through_proxy = world.settings.model_copy(update={"elasticsearch_url": world.api_settings.elasticsearch_url})
    with world.serve(api_search_budget_seconds=BUDGET) as api:
        with Poller(api.base_url, world.keys.as_reader, cached) as warm:
            warm.wait_for(len(cached))
        with Poller(api.base_url, world.keys.as_reader, [c for pair in zip(cached, uncached) for c in pair]) as poller:
            world.proxies.elasticsearch.refuse()  # down for the API and for the pipeline alike
            down_at = time.monotonic()
            poller.wait_for(200)
            failed = run_ingestion(through_proxy, second.partition_key)
            poller.wait_for(100)
            world.proxies.elasticsearch.forward()
            back_at = time.monotonic()
            recovered = next_answer(poller, back_at, lambda o: o.customer_id in uncached and o.status == 200)
            rerun = run_ingestion(world.settings, second.partition_key)
            switched = time.monotonic()
            poller.wait_for(100)

    assert not failed.success and "Connection" in failure_text(failed)
    assert rerun.success, failure_text(rerun)
    outage = [o for o in poller.observations if down_at <= o.at < back_at]
    refused = [o for o in outage if o.status == 503]
    assert {o.customer_id for o in refused} <= set(uncached)  # only what no cache held
    assert all(o.status == 200 for o in outage if o.customer_id in cached)  # cached answers still served
    assert refused and max(o.seconds for o in refused) < BUDGET + 1.0  # failed fast, never hung
    tally = judge(poller.observations, switch_windows([world.first], [second], back_at, switched))
    assert_no_wrong_answers(tally)
    record(FaultRow(
        "Elasticsearch down while serving (for the API and the pipeline alike)",
        f"cached answers served; the rest 503 with Retry-After in at most {max(o.seconds for o in refused) * 1000:.0f} ms "
        f"({len(refused)} refused); an ingestion meanwhile failed and changed nothing; recovered by itself",
        tally.served, tally.wrong,
        f"{recovered - back_at:.1f} s from Elasticsearch back to uncached lookups answering (breaker open time, {BREAKER_OPEN:.0f} s here)",
        "test_faults.py::test_elasticsearch_down_while_serving; API alone: "
        "tests/integration/test_serving_resilience.py::test_with_elasticsearch_down_cached_answers_are_served_and_the_rest_fail_fast",
    ))


def test_an_api_process_started_while_elasticsearch_is_down(world: World) -> None:
    cached = customers(POPULATION)[:100]
    uncached = [f"new-{n:03d}" for n in range(100)]
    with world.serve() as api, Poller(api.base_url, world.keys.as_reader, cached) as warm:
        warm.wait_for(2 * len(cached))  # every answer, and the catalog its entries need, in Redis
    world.proxies.elasticsearch.refuse()
    down_at = time.monotonic()
    try:
        # A new process, with nothing in memory: only Redis can tell it what is served, and answer.
        with world.serve(api_search_budget_seconds=BUDGET) as api:
            with Poller(api.base_url, world.keys.as_reader, [c for pair in zip(cached, uncached) for c in pair]) as poller:
                poller.wait_for(400)
                world.proxies.elasticsearch.forward()
                back_at = time.monotonic()
                recovered = next_answer(poller, back_at, lambda o: o.customer_id in uncached and o.status == 200)
                poller.wait_for(100)
    finally:
        world.proxies.elasticsearch.forward()

    outage = [o for o in poller.observations if down_at <= o.at < back_at]
    refused = [o for o in outage if o.status == 503]
    assert all(o.status == 200 for o in outage if o.customer_id in cached)  # Redis's answers, joined without Elasticsearch
    assert {o.customer_id for o in refused} == set(uncached)
    assert max(o.seconds for o in refused) < BUDGET + 1.0
    tally = judge(poller.observations, lambda _: [world.first])
    assert_no_wrong_answers(tally)
    record(FaultRow(
        "an API process started while Elasticsearch is down (its cache in Redis)",
        f"every answer Redis held served ({sum(o.status == 200 for o in outage)} during the outage), joined with the "
        f"catalogs cached beside them; the rest 503 in at most {max(o.seconds for o in refused) * 1000:.0f} ms",
        tally.served, tally.wrong,
        f"{recovered - back_at:.1f} s from Elasticsearch back to uncached lookups answering (breaker open time, {BREAKER_OPEN:.0f} s here)",
        "test_faults.py::test_an_api_process_started_while_elasticsearch_is_down; API alone: "
        "tests/integration/test_serving_resilience.py::test_a_new_process_joins_an_entry_written_after_its_catalog_was_first_cached",
    ))


def test_an_alias_switch_under_steady_load(world: World) -> None:
    second = Calculation.write(world.settings, "2026-11-21", overlapping_segments(2, POPULATION))
    population = customers(POPULATION)
    with world.serve() as api:
        pollers = [Poller(api.base_url, world.keys.as_reader, population[n::3]) for n in range(3)]
        for poller in pollers:
            poller.__enter__()
        try:
            for poller in pollers:
                poller.wait_for(2 * POPULATION // 3)  # every customer cached, twice asked
            started = time.monotonic()
            published = run_ingestion(world.settings, second.partition_key)
            switched = time.monotonic()
            for poller in pollers:
                poller.wait_for(POPULATION)
        finally:
            for poller in pollers:
                poller.__exit__()

    assert published.success, failure_text(published)
    [index] = served(world.settings)
    meta = writer(world.settings).segment_index(index).meta  # the alias step writes it once the aliases moved
    moved = datetime.fromisoformat(meta["published_at"]).timestamp() - (time.time() - time.monotonic())
    observations = sorted((o for poller in pollers for o in poller.observations), key=lambda o: o.at)
    tally = judge(observations, switch_windows([world.first], [second], started, switched))
    assert_no_wrong_answers(tally)
    assert tally.refused == 0  # a switch costs no failed request
    answering = min(wait_until_answering(poller, second, world.first, started, timeout=0.1) for poller in pollers)
    after = [o for o in observations if o.at >= moved]  # its latency is measured by bench_api.py (e), not asserted here
    record(FaultRow(
        "an alias switch under steady lookups (3 clients, every customer cached)",
        f"no request failed; p99 {p99(after) * 1000:.0f} ms after the switch; each process read the switched type "
        "again for its cached customers, in shared searches, before answering from it (bench_api.py (e): the same "
        "at half the hit peak)",
        tally.served, tally.wrong,
        f"{answering - moved:.1f} s from the aliases moving to the new calculation answering",
        "test_faults.py::test_an_alias_switch_under_steady_load; per type: tests/integration/test_cache_per_type.py",
    ))


def next_answer(poller: Poller, since: float, wanted: Callable[[Observation], bool], timeout: float = 30) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [o.at for o in list(poller.observations) if o.at >= since and wanted(o)]
        if found:
            return found[0]
        time.sleep(0.02)
    raise AssertionError("no such answer came")


def test_postgresql_down_lookups_go_on_and_config_management_answers_503(world: World) -> None:
    segment = {"name": "x", "segment_type": "new_customers", "params": {"max_days_since_signup": 3}}
    with world.serve() as api, Poller(api.base_url, world.keys.as_reader, customers(POPULATION)) as poller:
        api.state.api_keys.ttl_seconds = 0.5  # the outage outlives the key cache many times over
        admin = httpx.Client(base_url=api.base_url, headers=world.keys.as_admin, timeout=30)
        assert admin.post("/v1/segments", json=segment).status_code == 201
        poller.wait_for(50)
        answers: dict[str, list[tuple[int, float]]] = {}
        for mode in ("refuse", "swallow"):  # refused at once, then accepted and never answered
            getattr(world.proxies.postgresql, mode)()
            down_at = time.monotonic()
            for call in ("GET /v1/segments", "POST /v1/segments", "GET /v1/segment-types"):
                method, path = call.split()
                started = time.monotonic()
                response = admin.request(method, path, json=segment if method == "POST" else None)
                answers.setdefault(call, []).append((response.status_code, time.monotonic() - started))
                assert response.status_code in (503, 200) and (response.status_code == 200) == (call == "GET /v1/segment-types")
            unknown = httpx.get(f"{api.base_url}/v1/customers/c0001/segments", headers={"Authorization": f"Bearer {new_token()}"}, timeout=30)
            assert unknown.status_code == 503  # cannot tell an unknown key from a valid one: not a 401
            ready = httpx.get(f"{api.base_url}/readyz", timeout=10).json()
            assert ready["checks"]["postgresql"] != "ok" and ready["checks"]["elasticsearch"] == "ok"
            time.sleep(max(0.0, down_at + 4 * api.state.api_keys.ttl_seconds - time.monotonic()))  # past the key cache's life
            poller.wait_for(100)
        world.proxies.postgresql.forward()
        back_at = time.monotonic()
        while admin.get("/v1/segments").status_code != 200:
            assert time.monotonic() - back_at < 30, "config management did not come back"
            time.sleep(0.1)
        recovered = time.monotonic()
        admin.close()

    tally = judge(poller.observations, lambda _: [world.first])
    assert_no_wrong_answers(tally)
    assert tally.refused == 0  # lookups never needed PostgreSQL
    slowest = max(seconds for calls in answers.values() for _, seconds in calls)
    assert slowest < CONNECT_TIMEOUT_SECONDS + 2  # 503 after the connect timeout at worst, never a hang
    record(FaultRow(
        "PostgreSQL down (refusing, then accepting and never answering)",
        f"lookups unaffected (keys keep their last verdict); config management 503 within {slowest:.1f} s; "
        "an unseen key 503; /readyz names postgresql",
        tally.served, tally.wrong,
        f"{recovered - back_at:.1f} s from PostgreSQL back to config management answering",
        "test_faults.py::test_postgresql_down_lookups_go_on_and_config_management_answers_503",
    ))


def test_two_ingestions_of_one_type_at_once(world: World) -> None:
    second = Calculation.write(world.settings, "2026-11-21", overlapping_segments(2, POPULATION))
    third = Calculation.write(world.settings, "2026-11-22", overlapping_segments(3, POPULATION))
    faulty = FaultyElasticsearch(world.settings.elasticsearch_url)
    faulty.open.clear()  # the first ingestion waits mid-load, holding the type's lock
    outcome: dict[str, dg.ExecuteInProcessResult] = {}

    def first_ingestion() -> None:
        outcome["first"] = run_ingestion(world.settings.model_copy(update={"elasticsearch_url": faulty.url}), second.partition_key)

    with world.serve() as api, Poller(api.base_url, world.keys.as_reader, customers(POPULATION)) as poller:
        poller.wait_for(50)
        started = time.monotonic()
        runner = threading.Thread(target=first_ingestion)
        runner.start()
        assert faulty.bulk_waiting.wait(60), "the first ingestion never started loading"
        refused_started = time.monotonic()
        refused = run_ingestion(world.settings, third.partition_key)
        refused_in = time.monotonic() - refused_started
        poller.wait_for(100)
        faulty.open.set()
        runner.join(120)
        first_done = time.monotonic()
        again = run_ingestion(world.settings, third.partition_key)  # its turn now
        switched = time.monotonic()
        poller.wait_for(100)
    faulty.close()

    assert not refused.success
    assert "another ingestion of segment type 'new_customers' is running" in failure_text(refused)
    assert outcome["first"].success, failure_text(outcome["first"])
    assert again.success, failure_text(again)

    def allowed(moment: float) -> list[Calculation]:
        if moment < started:
            return [world.first]
        calculations = []
        if moment < first_done + SWITCH_WINDOW:  # the first may linger a little after the second's switch
            calculations += [world.first, second]
        if moment >= first_done:  # the rerun may switch to the third any time from here
            calculations += [second, third] if moment < switched + SWITCH_WINDOW else [third]
        return calculations

    tally = judge(poller.observations, allowed)
    assert_no_wrong_answers(tally)
    record(FaultRow(
        "Two ingestions of one type at once (the first held mid-load)",
        f"the second refused in {refused_in:.1f} s, naming the holder; the first published; the second ran after",
        tally.served, tally.wrong,
        "none needed (rerun once the first finished)",
        "test_faults.py::test_two_ingestions_of_one_type_at_once; ingestion alone: "
        "tests/integration/test_ingestion_lock.py::test_two_ingestions_of_one_type_at_once_one_runs_one_refuses",
    ))


def flip_a_bit_in_the_members(part: Path) -> None:
    """Rewrites the part as Spark's writer does (page checksums), then flips the first bit of the
    customer ids' pages that still decodes, to other ids: the damage only a checksum can see."""
    table = pq.read_table(part)
    pq.write_table(table, part, write_page_checksum=True)
    data = part.read_bytes()
    column = pq.ParquetFile(part).metadata.row_group(0).column(1)
    start = column.dictionary_page_offset or column.data_page_offset
    for position in range(start, start + column.total_compressed_size):
        flipped = bytearray(data)
        flipped[position] ^= 0x01
        part.write_bytes(bytes(flipped))
        try:
            if pq.read_table(part, columns=["segment_id", "customer_id"]) != table:
                return
        except (OSError, pa.ArrowException):
            pass
    raise AssertionError("no silent bit flip found")


def cause_of(message: str) -> str:
    """The exception line of a step failure's text, without the traceback around it."""
    causes = re.findall(r"^(?:\w+\.)*[A-Z]\w+: .+$", message, flags=re.MULTILINE)
    ours = [c for c in causes if not c.startswith(("dagster", "The above"))]
    return (ours[0] if ours else message.strip().splitlines()[0])[:200]


DAMAGE = {
    "truncated": lambda part: part.write_bytes(part.read_bytes()[: len(part.read_bytes()) // 2]),
    "footer overwritten": lambda part: part.write_bytes(part.read_bytes()[:-300] + b"\xff" * 292 + part.read_bytes()[-8:]),
    "a bit flipped in the ids": flip_a_bit_in_the_members,
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_corrupt_parquet_part_in_the_results(world: World, damage: str) -> None:
    segments = overlapping_segments(2, POPULATION)
    second = Calculation.write(world.settings, "2026-11-21", segments)
    folder = Path(world.settings.lake_uri) / "segments" / "new_customers" / "2026-11-21"
    part = sorted(folder.glob("part-*.parquet"))[1]
    DAMAGE[damage](part)
    with world.serve() as api, Poller(api.base_url, world.keys.as_reader, customers(POPULATION)) as poller:
        poller.wait_for(50)
        served_before = served(world.settings)
        failed = run_ingestion(world.settings, second.partition_key)
        failed_at = time.monotonic()
        poller.wait_for(100)
        served_after = served(world.settings)
        redone = Calculation.write(world.settings, "2026-11-21", segments)  # the calculation run again
        rerun = run_ingestion(world.settings, redone.partition_key)
        switched = time.monotonic()
        shown = wait_until_answering(poller, redone, world.first, switched - SWITCH_WINDOW)
        poller.wait_for(100)

    tally = judge(poller.observations, switch_windows([world.first], [redone], failed_at, switched))
    message = failure_text(failed)
    record(FaultRow(
        f"A corrupt Parquet part in the results ({damage})",
        f"ingestion failed ('{cause_of(message)}'); the alias unchanged" if not failed.success
        else "ingestion PUBLISHED the damaged calculation",
        tally.served, tally.wrong,
        f"{shown - failed_at:.1f} s from the failure to the recomputed calculation answering (results rewritten, rerun)",
        f"test_faults.py::test_a_corrupt_parquet_part_in_the_results[{damage}]",
    ))
    assert not failed.success and served_after == served_before
    assert part.name in message  # says which file
    assert rerun.success, failure_text(rerun)
    assert_no_wrong_answers(tally)
