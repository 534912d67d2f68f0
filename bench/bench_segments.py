"""100K segments of one type, end to end (issue 21): Spark, publishing, lookups, catalogs.

On a generated lake (100,000 customers, ~1M orders over 90 days by default), with segment
parameters mixed as a platform of that size has them (most segments narrowed to one store, a few
percent to a city or a category, a few hundred to a country or nothing), the same mix drawn for
1,000 segments (the baseline: the largest calculation tested before) and for 100,000:

1. Spark: the one-pass job (`run_segment_job`) for each, in one SparkSession after a warm-up,
   interleaved: a first calculation (every member entered), then the next day's, counted against it
   (who entered and exited), as a daily run does. Target: 100K costs at most 3x what 1K costs. Also
   100K segments that hold nobody: what the segments themselves cost, apart from their members.
2. Publishing: each calculation indexed, verified and switched behind its own prefix with the code
   the index and alias assets run (`ingest_calculation`, `publish_index`). Target: it completes.
3. Lookups: `segmentation api` (2 workers) per prefix; customers that the 100K calculation holds
   in 1,000+ segments (counted from the results with Arrow, not by the code under test), each asked
   once (a cache miss: MGET, one search, the answer joined from the catalog) and then again (a
   hit), one request at a time; every answer's segment count is checked against the results.
   Target: p99 <= 50 ms at 100K. The same customers asked of the 1K calculation are the baseline.
4. Catalogs: what one API process holds per index (segment attributes, read once per index):
   its Python heap (tracemalloc), its size serialized in Redis, the seconds to read it from
   Elasticsearch, and each worker's RSS before and after its lookups.

    .venv/bin/python bench/bench_segments.py [--customers 100000 --segments 100000 --lookups 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from datetime import time as dt_time
from pathlib import Path
from typing import Any

import orjson
import psutil
import pyarrow.compute as pc
import pyarrow.parquet as pq
import redis
from elasticsearch import Elasticsearch
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_api import free_port, unlink_matching, wait_until_up  # noqa: E402
from devtools.synthetic_lake import generate_lake  # noqa: E402
from resources.circuit_breaker import Circuits  # noqa: E402
from resources.config_store.api_keys import ApiKeyRepository  # noqa: E402
from resources.config_store.database import session_factory, upgrade_schema  # noqa: E402
from resources.lake.storage import Lake  # noqa: E402
from resources.names import generation_key, served_indices_key  # noqa: E402
from resources.publishing.aliases import publish_index  # noqa: E402
from resources.publishing.index_writer import SegmentIndexWriter  # noqa: E402
from resources.publishing.ingestion import IngestionSettings, ingest_calculation  # noqa: E402
from resources.publishing.lock import IngestionLock  # noqa: E402
from resources.serving.reader import SegmentReader  # noqa: E402
from resources.serving.search_guard import SearchGuard, search_client  # noqa: E402
from resources.settings import Settings, elasticsearch_hosts  # noqa: E402
from segmentation_assets.core.segment_job import SegmentConfig, SegmentJobRequest, SegmentJobResult, run_segment_job  # noqa: E402
from segmentation_assets.core.spark_session import local_spark_session  # noqa: E402

SEGMENT_TYPE = "frequent_buyers"  # the costliest type per segment (bench_segment_types.py)
END = date(2026, 11, 25)
# Narrowing -> share of segments. Platforms of 100K segments are mostly partner and store
# audiences; a few thousand are city or category wide; a few hundred cover a country or everyone.
NARROWING_MIX = {"store": 90.0, "category_city": 7.0, "city": 2.0, "category": 0.6, "country": 0.2, "none": 0.2}
MANY_SEGMENTS_HELD = 1_000  # lookups are of customers in at least this many segments


def segment_params(rng: random.Random, stores: list[dict[str, Any]]) -> dict[str, Any]:
    store = rng.choice(stores)
    narrowing = rng.choices(list(NARROWING_MIX), weights=list(NARROWING_MIX.values()))[0]
    scope = {
        "store": {"store_id": store["store_id"]},
        "category_city": {"category": store["category"], "city": store["city"]},
        "city": {"city": store["city"]},
        "category": {"category": store["category"]},
        "country": {"country": store["country"]},
        "none": {},
    }[narrowing]
    return {"min_orders": rng.choice([1, 1, 2, 2, 3, 4, 5, 8, 12]), "lookback_days": rng.choice([7, 14, 30, 60, 90]), **scope}


def segment_configs(count: int, stores: list[dict[str, Any]], seed: int) -> list[SegmentConfig]:
    rng = random.Random(seed)
    return [
        SegmentConfig(f"seg-{i:06d}", 1, segment_params(rng, stores), {"name": f"segment {i}", "labels": {"team": "bench"}})
        for i in range(count)
    ]


@dataclass
class Scale:
    """One calculation of the bench: its segments, and what was measured of it."""

    label: str
    configs: list[SegmentConfig]
    partition_key: str  # each scale its own days, so that all results stay in the lake
    prefix: str
    first_seconds: list[float] = field(default_factory=list)
    daily_seconds: list[float] = field(default_factory=list)
    result: SegmentJobResult | None = None

    @property
    def day_before(self) -> str:
        return (date.fromisoformat(self.partition_key) - timedelta(days=1)).isoformat()


def _job(lake: Path, scale: Scale, partition_key: str, earlier: SegmentJobResult | None) -> SegmentJobResult:
    ids = [c.segment_id for c in scale.configs]
    request = SegmentJobRequest(
        segment_type=SEGMENT_TYPE, partition_key=partition_key,
        as_of=datetime.combine(date.fromisoformat(partition_key) + timedelta(days=1), dt_time(), timezone.utc).isoformat(),
        lake_uri=str(lake), run_id=f"bench-{scale.label}-{partition_key}", configs=scale.configs,
        earlier_results={earlier.results_uri: ids} if earlier else {}, first_calculations=[] if earlier else ids,
    )
    return run_segment_job(local_spark_session(), request)


def calculate(lake: Path, scale: Scale) -> None:
    """The day before, a first calculation; then the day, counted against it."""
    started = time.perf_counter()
    earlier = _job(lake, scale, scale.day_before, None)
    scale.first_seconds.append(time.perf_counter() - started)
    started = time.perf_counter()
    scale.result = _job(lake, scale, scale.partition_key, earlier)
    scale.daily_seconds.append(time.perf_counter() - started)


def publish(es: Elasticsearch, coordination: redis.Redis, lake: Path, scale: Scale, settings: Settings) -> dict[str, Any]:
    """Parquet to a switched alias through the code the index and alias assets run; then the merge
    into one Lucene segment that the switch starts, waited for out of the timing."""
    writer = SegmentIndexWriter(es, scale.prefix)
    ingestion = IngestionSettings(chunk_size=settings.ingest_chunk_size)
    run_id = uuid.uuid4().hex
    started = time.perf_counter()
    with IngestionLock(coordination, scale.prefix, SEGMENT_TYPE, 3600, owner=run_id).held():
        report = ingest_calculation(writer, Lake(str(lake)), SEGMENT_TYPE, scale.partition_key, run_id, ingestion)
        if not report.complete:
            raise RuntimeError(f"{scale.label}: incomplete index: {str(report.mismatches)[:500]}")
        move = publish_index(writer, coordination, SEGMENT_TYPE, report.index, retention=1)
    seconds = time.perf_counter() - started
    merge_started = time.perf_counter()
    if move.compaction and move.compaction.startswith("task "):
        es.tasks.get(task_id=move.compaction.removeprefix("task "), wait_for_completion=True, timeout="1800s")
    settings_of = es.indices.get_settings(index=report.index)[report.index]["settings"]["index"]
    return {
        "index": report.index, "seconds": seconds, "merge_seconds": time.perf_counter() - merge_started,
        "memberships": report.memberships, "documents": report.documents, "store_bytes": writer.store_bytes(report.index),
        "shards": int(settings_of["number_of_shards"]),
    }


def members_held(result: SegmentJobResult) -> dict[str, int]:
    """customer_id -> in how many segments the calculation holds it, counted from its results."""
    table = pq.read_table(result.results_uri.removeprefix("file://"), columns=["customer_id"])
    counts = pc.value_counts(table.column("customer_id").combine_chunks())
    return dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()))


async def catalog_footprint(settings: Settings, prefix: str, index: str) -> dict[str, float]:
    """One process's catalog of `index`: seconds to read it (the API's client), then heap bytes
    (a second read, under tracemalloc, which slows it), serialized bytes, seconds to take it back."""
    es = search_client(settings.elasticsearch_url, 120)
    try:
        guard = SearchGuard(Circuits(), budget_seconds=60, open_seconds=5)

        def reader() -> SegmentReader:
            return SegmentReader(es, prefix, guard, catalog_budget_seconds=60)

        started = time.perf_counter()
        await reader().catalog(index)
        seconds = time.perf_counter() - started
        tracemalloc.start()
        catalog = await reader().catalog(index)
        heap = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        serialized = SegmentReader.serialized_catalog(catalog)
        started = time.perf_counter()
        reader().adopt_catalog(index, serialized)
        adopt_seconds = time.perf_counter() - started
        return {"entries": len(catalog), "heap_mb": heap / 2**20, "serialized_mb": len(serialized) / 2**20,
                "read_seconds": seconds, "adopt_seconds": adopt_seconds}
    finally:
        await es.close()


class ApiServer:
    """`segmentation api` on a free port, serving one prefix; its workers' memory by pid."""

    def __init__(self, prefix: str, database_url: str, workdir: Path, workers: int) -> None:
        self.url_port = free_port()
        env = {**os.environ, "SEGMENTATION_INDEX_PREFIX": prefix, "SEGMENTATION_DATABASE_URL": database_url,
               "SEGMENTATION_STATE_DIR": str(workdir / "state")}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.process = subprocess.Popen(
            [str(ROOT / ".venv/bin/segmentation"), "api", "--port", str(self.url_port), "--workers", str(workers)],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(workdir / f"{prefix}.log", "wb"),
        )
        wait_until_up(f"http://127.0.0.1:{self.url_port}")

    def worker_rss_mb(self) -> list[float]:
        workers = psutil.Process(self.process.pid).children(recursive=True) or [psutil.Process(self.process.pid)]
        return [w.memory_info().rss / 2**20 for w in workers]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def timed_lookups(port: int, key: str, customers: list[str], expected: dict[str, int]) -> list[float]:
    """Seconds of each `GET /v1/customers/{id}/segments`, one at a time on one keep-alive
    connection; each answer's segment count must be the results' count."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {key}"}
    seconds = []
    for customer in customers:
        started = time.perf_counter()
        connection.request("GET", f"/v1/customers/{customer}/segments", headers=headers)
        response = connection.getresponse()
        body = response.read()
        seconds.append(time.perf_counter() - started)
        if response.status != 200:
            raise RuntimeError(f"lookup of {customer}: HTTP {response.status}: {body[:300]!r}")
        held = len(orjson.loads(body)["segments"])
        if held != expected.get(customer, 0):
            raise RuntimeError(f"lookup of {customer}: {held} segments answered, the results hold {expected.get(customer, 0)}")
    connection.close()
    return seconds


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure_lookups(scale: Scale, customers: list[str], database_url: str, key: str, workdir: Path, workers: int) -> dict[str, Any]:
    assert scale.result is not None
    expected = members_held(scale.result)
    server = ApiServer(scale.prefix, database_url, workdir, workers)
    try:
        rss_before = server.worker_rss_mb()
        first = timed_lookups(server.url_port, key, customers[:1], expected)[0]  # reads the catalog
        misses = timed_lookups(server.url_port, key, customers[1:], expected)
        hits = timed_lookups(server.url_port, key, customers[1:], expected)
        rss_after = server.worker_rss_mb()
    finally:
        server.stop()
    held = [expected.get(c, 0) for c in customers]
    return {"first": first, "misses": misses, "hits": hits, "rss_before": rss_before, "rss_after": rss_after,
            "held_min": min(held), "held_median": statistics.median(held), "held_max": max(held)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--segments", type=int, default=100_000)
    parser.add_argument("--baseline-segments", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=1, help="Spark runs of each scale, interleaved")
    parser.add_argument("--lookups", type=int, default=1_000, help="customers asked, each once missed and once hit")
    parser.add_argument("--workers", type=int, default=2, help="API worker processes")
    args = parser.parse_args()

    settings = Settings()
    run = uuid.uuid4().hex[:8]
    schema = f"bench_{run}"
    workdir = Path(tempfile.mkdtemp(prefix="bench-segments-"))
    lake = workdir / "lake"
    es = Elasticsearch(elasticsearch_hosts(settings.elasticsearch_url), request_timeout=600)
    cache = redis.Redis.from_url(settings.redis_url)
    coordination = redis.Redis.from_url(settings.coordination_redis_url)
    admin_engine = create_engine(settings.database_url)
    baseline = Scale("1k", [], "2026-11-23", f"bench-{run}-base")
    large = Scale("100k", [], "2026-11-25", f"bench-{run}-large")
    try:
        summary = generate_lake(str(lake), customers=args.customers, days=args.days, seed=1, end=END)
        print(f"lake: {summary.customers:,} customers, {summary.stores:,} stores, {summary.orders:,} orders over {summary.days} days")
        stores = pq.read_table(lake / "raw" / "stores").to_pylist()
        baseline.configs = segment_configs(args.baseline_segments, stores, seed=1)
        large.configs = segment_configs(args.segments, stores, seed=2)

        calculate(lake, Scale("warm-up", segment_configs(10, stores, seed=3), "2026-11-21", ""))
        # The same segments, every threshold out of reach: each segment's own cost, no members.
        nobody = Scale("100k-nobody", [replace(c, params={**c.params, "min_orders": 10_000}) for c in large.configs], "2026-11-19", "")
        for _ in range(args.repeat):  # interleaved, so drift on a noisy machine hits both alike
            calculate(lake, baseline)
            calculate(lake, large)
            calculate(lake, nobody)
        assert baseline.result is not None and large.result is not None and nobody.result is not None
        print(f"\n1. Spark, {SEGMENT_TYPE}       {len(baseline.configs):>10,} segments {len(large.configs):>12,} segments   ratio")
        for label, seconds in (("first calculation, s", lambda s: s.first_seconds), ("next day (+ changes), s", lambda s: s.daily_seconds)):
            base_s, large_s = statistics.median(seconds(baseline)), statistics.median(seconds(large))
            print(f"   {label:<23} {base_s:>19.1f} {large_s:>21.1f}   {large_s / base_s:5.2f}  (target <= 3.00)")
        print(f"   memberships             {baseline.result.total_members:>19,} {large.result.total_members:>21,}")
        nobody_s, base_s = statistics.median(nobody.first_seconds), statistics.median(baseline.first_seconds)
        print(f"   100K holding nobody, s  {'':>19} {nobody_s:>21.1f}   {nobody_s / base_s:5.2f}  (the segments alone)")

        published = {scale.label: publish(es, coordination, lake, scale, settings) for scale in (baseline, large)}
        b, m = published["1k"], published["100k"]
        print("\n2. publishing (index, verify, switch)")
        print(f"   seconds                 {b['seconds']:>19.1f} {m['seconds']:>21.1f}   {m['seconds'] / b['seconds']:5.2f}")
        for field in ("memberships", "documents", "shards"):
            print(f"   {field:<23} {b[field]:>19,} {m[field]:>21,}")
        print(f"   store MB                {b['store_bytes'] / 2**20:>19.1f} {m['store_bytes'] / 2**20:>21.1f}")
        print(f"   merge after, s          {b['merge_seconds']:>19.1f} {m['merge_seconds']:>21.1f}")

        held = members_held(large.result)
        customers = sorted(c for c, n in held.items() if n >= MANY_SEGMENTS_HELD)
        random.Random(4).shuffle(customers)
        customers = customers[: args.lookups + 1]
        if len(customers) < 2:
            raise RuntimeError(f"no customer is in {MANY_SEGMENTS_HELD:,}+ segments: a larger --segments is needed")
        with admin_engine.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        database_url = make_url(settings.database_url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
        upgrade_schema(database_url)
        key = ApiKeyRepository(session_factory(database_url)).create("bench", "read")
        lookups = {s.label: measure_lookups(s, customers, database_url, key, workdir, args.workers) for s in (baseline, large)}
        b, m = lookups["1k"], lookups["100k"]
        print(f"\n3. lookups of {len(customers) - 1:,} customers, in {m['held_min']:,}-{m['held_max']:,} segments at 100K "
              f"(median {m['held_median']:,.0f}), {b['held_min']}-{b['held_max']} at 1K; one at a time, {args.workers} workers")
        for case in ("misses", "hits"):
            for name, q in (("p50", 0.5), ("p99", 0.99)):
                base_ms, large_ms = percentile(b[case], q) * 1000, percentile(m[case], q) * 1000
                target = "  (target <= 50 ms)" if (case, name) == ("misses", "p99") else ""
                print(f"   {case} {name}, ms{'':<13} {base_ms:>19.1f} {large_ms:>21.1f}   {large_ms / base_ms:5.2f}{target}")
        print(f"   first lookup (catalog), ms {b['first'] * 1000:>16.0f} {m['first'] * 1000:>21.0f}")

        footprints = {s.label: asyncio.run(catalog_footprint(settings, s.prefix, published[s.label]["index"])) for s in (baseline, large)}
        b_cat, m_cat = footprints["1k"], footprints["100k"]
        print("\n4. the API's catalog of the index, per process")
        print(f"   entries                 {b_cat['entries']:>19,} {m_cat['entries']:>21,}")
        for field, label in (("heap_mb", "Python heap, MB"), ("serialized_mb", "in Redis, MB"),
                             ("read_seconds", "read from ES, s"), ("adopt_seconds", "taken from Redis, s")):
            print(f"   {label:<23} {b_cat[field]:>19.2f} {m_cat[field]:>21.2f}")
        for label, lookup in (("1K", b), ("100K", m)):
            grown = ", ".join(f"{before:.0f} -> {after:.0f}" for before, after in zip(lookup["rss_before"], lookup["rss_after"]))
            print(f"   worker RSS MB at {label:<6} {grown}")
        return 0
    finally:
        es.options(ignore_status=404).indices.delete(index=f"bench-{run}-*", expand_wildcards="all", allow_no_indices=True)
        for scale in (baseline, large):
            unlink_matching(cache, f"{scale.prefix}:*")
            coordination.delete(generation_key(scale.prefix), served_indices_key(scale.prefix))
        with admin_engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin_engine.dispose()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
