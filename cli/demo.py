"""The README's first command: services, a generated lake, sample segments, a run, a real lookup."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import httpx
import pyarrow.parquet as pq

from cli.runs import materialize_partition
from resources.config_store.api_keys import ApiKeyRepository
from resources.config_store.database import session_factory, upgrade_schema
from resources.lake.storage import Lake
from resources.settings import Settings
from devtools.synthetic_lake import generate_lake

SAMPLE_SEGMENTS = [
    {"name": "Signed up this week, no order yet", "segment_type": "new_customers",
     "params": {"max_days_since_signup": 7, "max_orders": 0}, "labels": {"team": "growth"}},
    {"name": "New in the last 30 days", "segment_type": "new_customers",
     "params": {"max_days_since_signup": 30, "max_orders": 1000}, "labels": {"team": "growth"}},
    {"name": "New in Madrid, at most one order", "segment_type": "new_customers",
     "params": {"max_days_since_signup": 30, "max_orders": 1, "city": "Madrid"}, "labels": {"team": "partners"}},
    {"name": "New in Portugal this quarter", "segment_type": "new_customers",
     "params": {"max_days_since_signup": 90, "max_orders": 3, "country": "PT"}, "labels": {"team": "partners"}},
    {"name": "3+ pharmacy orders in Madrid this month", "segment_type": "frequent_buyers",
     "params": {"min_orders": 3, "lookback_days": 30, "category": "pharmacy", "city": "Madrid"},
     "labels": {"team": "partners"}},
    {"name": "Weekly regulars", "segment_type": "frequent_buyers",
     "params": {"min_orders": 4, "lookback_days": 28}, "labels": {"team": "growth"}},
    {"name": "Spent 200 EUR in 30 days", "segment_type": "high_spenders",
     "params": {"min_total_amount": 200, "lookback_days": 30}, "labels": {"team": "marketing"}},
    {"name": "Lapsed regulars", "segment_type": "lapsed_customers",
     "params": {"inactive_days": 21, "min_lifetime_orders": 3}, "labels": {"team": "marketing"}},
]


def _step(message: str) -> None:
    print(f"==> {message}", flush=True)


def _free_port(preferred: int = 8000) -> int:
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", preferred)) != 0:
            return preferred
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        return free.getsockname()[1]


def _wait_until_up(base_url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the API did not come up at {base_url}")


def _a_member(settings: Settings, partition_key: str) -> str | None:
    lake = Lake(settings.lake_uri)
    fs, _ = lake.filesystem()
    for path in lake.parquet_files(lake.results_dir("frequent_buyers", partition_key)):
        table = pq.read_table(path, filesystem=fs, columns=["customer_id"])
        if table.num_rows:
            return table.column("customer_id")[0].as_py()
    return None


def run_demo(settings: Settings, *, customers: int, days: int, serve: bool) -> int:
    from devtools.local_services import services_up

    started = time.monotonic()
    _step("starting Elasticsearch, PostgreSQL and Redis")
    for state in services_up(settings):
        print(f"    {state.name}: {state.url} ({'ours' if state.managed else 'external'})")
    _step("migrating the config store")
    upgrade_schema(settings.database_url)

    end = datetime.now(timezone.utc).date() - timedelta(days=1)
    partition_key = end.isoformat()
    _step(f"generating a lake of {customers} customers over {days} days at {settings.lake_uri}")
    summary = generate_lake(settings.lake_uri, customers=customers, days=days, seed=42, end=end)
    print(f"    {summary.orders} orders, {summary.stores} stores, {summary.invalid_rows} invalid rows")

    keys = ApiKeyRepository(session_factory(settings.database_url))
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    admin_key = keys.create(f"demo-admin-{stamp}", "admin")
    read_key = keys.create(f"demo-reader-{stamp}", "read")

    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    _step(f"starting the API at {base_url}")
    api = subprocess.Popen([sys.executable, "-m", "cli.main", "api", "--port", str(port)])
    try:
        _wait_until_up(base_url)
        admin = {"Authorization": f"Bearer {admin_key}"}
        existing = {s.name for s in _active_segments(settings)}
        for segment in SAMPLE_SEGMENTS:
            if segment["name"] in existing:
                continue
            created = httpx.post(f"{base_url}/v1/segments", json=segment, headers=admin, timeout=10)
            created.raise_for_status()
            print(f"    created {created.json()['id']}: {segment['name']}")

        _step(f"materializing partition {partition_key}: calculation, index, alias (through Dagster)")
        outcome = materialize_partition(settings, partition_key, [])
        print("\n".join(f"    {line}" for line in outcome.summary_lines))
        if not outcome.success:
            return 1

        customer_id = _a_member(settings, partition_key) or "c00000001"
        _step(f"GET /v1/customers/{customer_id}/segments")
        answer = httpx.get(
            f"{base_url}/v1/customers/{customer_id}/segments",
            headers={"Authorization": f"Bearer {read_key}"},
            timeout=10,
        )
        print(json.dumps(answer.json(), indent=2))
        _step(f"done in {time.monotonic() - started:.0f}s; read key for more lookups: {read_key}")
        if serve:
            print(f"serving at {base_url}; Ctrl-C to stop", flush=True)
            api.wait()
        return 0 if answer.status_code == 200 else 1
    finally:
        if api.poll() is None:
            api.terminate()
            api.wait(timeout=20)


def _active_segments(settings: Settings):
    from resources.config_store.segments import SegmentRepository
    from segmentation_assets.core.segment_types import SEGMENT_TYPES

    segments = SegmentRepository(session_factory(settings.database_url))
    return [s for segment_type in SEGMENT_TYPES for s in segments.active_of_type(segment_type)]
