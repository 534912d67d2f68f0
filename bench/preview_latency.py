"""Previews, end to end: seconds from `POST /v1/segments:preview` to the preview `done`.

Against a running API and a running Dagster daemon (`segmentation ui`) of one deployment, on its
lake: each try asks for a preview (a different `frequent_buyers` look-back each time, the default
partition), then polls `GET /v1/previews/{id}` every 0.25 s until it is `done` (or `failed`,
which ends the benchmark). Tries run one after another, so each pays a whole run: the sensor's
tick, the run queue, the run's process and Spark session, the Spark job.

    .venv/bin/python bench/preview_latency.py --api http://127.0.0.1:8400 --key "$ADMIN_KEY" \\
        --dagster http://127.0.0.1:3400 --tries 5

With `--dagster`, it first waits for the preview sensor's first tick.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sensor_ticks import wait_for_first_tick  # noqa: E402
from segmentation_assets.previews import PREVIEW_SENSOR  # noqa: E402

POLL_SECONDS = 0.25
def one_try(client: httpx.Client, n: int, timeout: float) -> tuple[dict, float]:
    body = {"segment_type": "frequent_buyers", "params": {"min_orders": 2, "lookback_days": 20 + n}}
    started = time.monotonic()
    response = client.post("/v1/segments:preview", json=body)
    if response.status_code != 202:
        raise SystemExit(f"POST answered {response.status_code}: {response.text}")
    location = response.headers["Location"]
    while time.monotonic() - started < timeout:
        preview = client.get(location).json()
        if preview["status"] == "done":
            return preview, time.monotonic() - started
        if preview["status"] == "failed":
            raise SystemExit(f"preview {preview['preview_id']} failed: {preview['error']}")
        time.sleep(POLL_SECONDS)
    raise SystemExit(f"{location} not done after {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", default="http://127.0.0.1:8000")
    parser.add_argument("--key", required=True, help="an admin API key")
    parser.add_argument("--dagster", help="the Dagster webserver: wait for the preview sensor's first tick")
    parser.add_argument("--tries", type=int, default=5)
    parser.add_argument("--pause", type=float, default=5.0, help="seconds between tries")
    parser.add_argument("--timeout", type=float, default=300.0, help="per try")
    args = parser.parse_args()

    if args.dagster:
        wait_for_first_tick(args.dagster, PREVIEW_SENSOR, timeout=300)
    seconds: list[float] = []
    with httpx.Client(base_url=args.api, headers={"Authorization": f"Bearer {args.key}"}, timeout=30) as client:
        for n in range(1, args.tries + 1):
            preview, took = one_try(client, n, args.timeout)
            seconds.append(took)
            print(
                f"try {n}: {preview['preview_id']} ({preview['partition']}) done {took:.1f} s after its POST: "
                f"{preview['member_count']} members",
                flush=True,
            )
            time.sleep(args.pause)
    print(f"previews, {len(seconds)} tries: p50 {statistics.median(seconds):.1f} s, max {max(seconds):.1f} s")


if __name__ == "__main__":
    main()
