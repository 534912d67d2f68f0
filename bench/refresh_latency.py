"""Refresh on change, end to end: seconds from `POST /v1/segments` to the new segment served.

Against a running API and a running Dagster daemon (`segmentation ui`) of one deployment, on its
lake: each try creates a `new_customers` segment, then polls `GET /v1/segments/{id}/stats` and,
once that answers, a lookup of one of its members (`GET /v1/customers/{customer_id}/segments`)
until both serve it. Tries run one after another. Every segment it created is archived at the end.

    .venv/bin/python bench/refresh_latency.py --api http://127.0.0.1:8100 --key "$ADMIN_KEY" \\
        --dagster http://127.0.0.1:3300 --tries 5

With `--dagster`, it first waits for the refresh sensor's first tick: changes made before that are
left to the schedule. The baseline is the schedule alone: a change waits for the next daily tick.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from resources.settings import get_settings  # noqa: E402
from bench.sensor_ticks import wait_for_first_tick  # noqa: E402
from segmentation_assets.refresh import REFRESH_ON_CHANGE_SENSOR  # noqa: E402

POLL_SECONDS = 0.5
def one_try(client: httpx.Client, n: int, timeout: float) -> tuple[str, float]:
    body = {
        "name": f"refresh latency try {n} {datetime.now(timezone.utc):%H%M%S}",
        "segment_type": "new_customers",
        "params": {"max_days_since_signup": 20 + n, "max_orders": 1000},
        "labels": {"bench": "refresh-latency"},
    }
    started = time.monotonic()
    created = client.post("/v1/segments", json=body)
    created.raise_for_status()
    segment_id = created.json()["id"]
    member = None
    while time.monotonic() - started < timeout:
        if member is None and client.get(f"/v1/segments/{segment_id}/stats").status_code == 200:
            members = client.get(f"/v1/segments/{segment_id}/members", params={"limit": 1}).json()["customer_ids"]
            member = members[0] if members else None
            if member is None:
                raise SystemExit(f"{segment_id} is served with no member: choose other params")
        if member is not None:
            segments = client.get(f"/v1/customers/{member}/segments").json()["segments"]
            if any(s["segment_id"] == segment_id for s in segments):
                return segment_id, time.monotonic() - started
        time.sleep(POLL_SECONDS)
    raise SystemExit(f"{segment_id} not served after {timeout:.0f} s")


def next_schedule_tick(now: datetime) -> datetime:
    settings = get_settings()
    if settings.partition_granularity == "hourly":
        tick = now.replace(minute=settings.refresh_minute_of_hour, second=0, microsecond=0)
        return tick if tick > now else tick + timedelta(hours=1)
    tick = now.replace(hour=settings.refresh_hour_of_day, minute=settings.refresh_minute_of_hour, second=0, microsecond=0)
    return tick if tick > now else tick + timedelta(days=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", default="http://127.0.0.1:8000")
    parser.add_argument("--key", required=True, help="an admin API key")
    parser.add_argument("--dagster", help="the Dagster webserver: wait for the sensor's first tick")
    parser.add_argument("--tries", type=int, default=5)
    parser.add_argument("--pause", type=float, default=10.0, help="seconds between tries")
    parser.add_argument("--timeout", type=float, default=900.0, help="per try")
    args = parser.parse_args()

    if args.dagster:
        wait_for_first_tick(args.dagster, REFRESH_ON_CHANGE_SENSOR, timeout=300)
    created: list[str] = []
    seconds: list[float] = []
    with httpx.Client(base_url=args.api, headers={"Authorization": f"Bearer {args.key}"}, timeout=30) as client:
        try:
            for n in range(1, args.tries + 1):
                segment_id, took = one_try(client, n, args.timeout)
                created.append(segment_id)
                seconds.append(took)
                print(f"try {n}: {segment_id} served {took:.1f} s after its POST", flush=True)
                time.sleep(args.pause)
        finally:
            for segment_id in created:
                client.delete(f"/v1/segments/{segment_id}")
    now = datetime.now(timezone.utc)
    wait = next_schedule_tick(now) - now
    print(f"refresh on change, {len(seconds)} tries: p50 {statistics.median(seconds):.1f} s, max {max(seconds):.1f} s")
    print(f"baseline (the schedule alone): a change waits for the next tick, up to 24 h (daily); from now: {wait}")


if __name__ == "__main__":
    main()
