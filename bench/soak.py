"""Soak (issue 7): `segmentation api` under sustained load for as long as asked, while calculations
are published and the alias is rolled back, alternately, every `--switch-every` seconds. Every
answer is checked against the calculations that may be served at its moment; prints requests,
p50/p99 (overall and per kind), errors and wrong answers, and exits non-zero on any of the last two.

The same scenario as tests/reliability/test_sustained_load.py (one minute in CI), with its code
(tests/reliability/sustained_load.py): lookups (70%), batches of 20 (20%), membership checks (10%)
from an asyncio/httpx loop, so the latencies include the Python client; bench/bench_api.py
measures the server alone with wrk.

    .venv/bin/python bench/soak.py --seconds 600
    .venv/bin/python bench/soak.py --seconds 3600 --switch-every 120 --population 200000 --workers 2

It builds its own namespace on the running services (PostgreSQL schema, index prefix, Redis keys,
lake in a temporary folder) and removes all of it at the end.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from elasticsearch import Elasticsearch
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from resources.config_store.database import upgrade_schema  # noqa: E402
from resources.settings import Settings  # noqa: E402
from tests.reliability import sustained_load  # noqa: E402
from tests.reliability.platform import make_keys  # noqa: E402


@contextmanager
def soak_namespace(base: Settings) -> Iterator[Settings]:
    run = uuid.uuid4().hex[:8]
    schema, prefix = f"soak_{run}", f"soak-{run}"
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    admin = create_engine(base.database_url)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(base.database_url).update_query_dict({"options": f"-csearch_path={schema}"})
        database_url = url.render_as_string(hide_password=False)
        upgrade_schema(database_url)
        yield base.model_copy(
            update={
                "database_url": database_url,
                "index_prefix": prefix,
                "lake_uri": str(workdir / "lake"),
                "state_dir": workdir / "state",
                "dagster_home": workdir / "dagster_home",
            }
        )
    finally:
        Elasticsearch(base.elasticsearch_url).options(ignore_status=404).indices.delete(
            index=f"{prefix}-*", expand_wildcards="all", allow_no_indices=True
        )
        client = redis.Redis.from_url(base.redis_url)
        for key in client.scan_iter(f"{prefix}:*", count=10_000):
            client.unlink(key)
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--switch-every", type=float, default=60, help="seconds between publications and rollbacks")
    parser.add_argument("--population", type=int, default=100_000, help="customers")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--workers", type=int, default=1, help="API worker processes")
    parser.add_argument("--budget", type=float, default=None, help="Elasticsearch time budget of the API, seconds (default: its setting)")
    args = parser.parse_args()

    with soak_namespace(Settings()) as settings:
        if args.budget:
            settings = settings.model_copy(update={"api_search_budget_seconds": args.budget})
        keys = make_keys(settings, "soak")
        print(f"soaking for {args.seconds:.0f} s: {args.population:,} customers, {args.concurrency} in flight, "
              f"{args.workers} API worker(s), a publication or rollback every {args.switch_every:.0f} s", flush=True)
        started = time.monotonic()
        report = sustained_load.run(
            settings,
            keys.as_reader,
            seconds=args.seconds,
            switch_every=args.switch_every,
            population=args.population,
            concurrency=args.concurrency,
            workers=args.workers,
            log_dir=Path(settings.state_dir).parent,
            progress=lambda line: print(line, flush=True),
        )
        print(report.line())
        for example in report.examples:
            print("  ", example)
        print(f"done in {time.monotonic() - started:.0f} s")
    return 1 if report.errors or report.wrong else 0


if __name__ == "__main__":
    sys.exit(main())
