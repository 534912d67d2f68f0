"""How the one-pass Spark job scales with the number of segments of a type.

On a generated lake of ~1M orders, for each segment type: wall time for 10 segments and for
1,000 segments, in the same process and SparkSession, after a warm-up. Target (issue 3):
1,000 segments cost at most 2x what 10 cost. Also orders/s read by the job.

    .venv/bin/python bench/bench_segment_types.py [--customers 100000 --days 90 --repeat 2]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from segmentation_assets.core.spark_session import local_spark_session  # noqa: E402
from devtools.synthetic_lake import generate_lake  # noqa: E402
from segmentation_assets.core.segment_job import SegmentConfig, SegmentJobRequest, run_segment_job  # noqa: E402

END = date(2026, 11, 25)
AS_OF = datetime(2026, 11, 26, tzinfo=timezone.utc)


def random_params(segment_type: str, rng: random.Random, stores: list[dict[str, Any]]) -> dict[str, Any]:
    """Parameters as a marketing team would set them: round thresholds, usual windows, some narrowing."""
    store = rng.choice(stores)
    narrowing = rng.choice(
        [{}, {}, {"store_id": store["store_id"]}, {"category": store["category"]}, {"city": store["city"]},
         {"country": store["country"]}, {"category": store["category"], "city": store["city"]}]
    )
    window = rng.choice([7, 14, 30, 60, 90])
    if segment_type == "frequent_buyers":
        return {"min_orders": rng.randint(1, 12), "lookback_days": window, **narrowing}
    if segment_type == "high_spenders":
        return {"min_total_amount": rng.choice([25, 50, 75, 100, 150, 200, 300, 500]), "lookback_days": window, **narrowing}
    if segment_type == "lapsed_customers":
        return {"inactive_days": window, "min_lifetime_orders": rng.randint(1, 10), **narrowing}
    customer = {k: v for k, v in narrowing.items() if k in ("city", "country")}
    return {"max_days_since_signup": rng.choice([1, 7, 14, 30, 60, 90, 180, 365]), "max_orders": rng.randint(0, 5), **customer}


def run(lake: Path, segment_type: str, configs: list[SegmentConfig]) -> tuple[float, int]:
    request = SegmentJobRequest(
        segment_type=segment_type, partition_key=END.isoformat(), as_of=AS_OF.isoformat(),
        lake_uri=str(lake), run_id="bench", configs=configs,
    )
    started = time.perf_counter()
    result = run_segment_job(local_spark_session(), request)
    return time.perf_counter() - started, result.total_members


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--types", nargs="*", default=["new_customers", "frequent_buyers", "high_spenders", "lapsed_customers"])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-segments-") as folder:
        lake = Path(folder)
        summary = generate_lake(str(lake), customers=args.customers, days=args.days, seed=1, end=END)
        print(f"lake: {summary.customers} customers, {summary.orders} orders over {summary.days} days "
              f"(generated in {summary.seconds:.1f}s)")
        stores = pq.read_table(lake / "raw" / "stores").to_pylist()
        rng = random.Random(42)
        run(lake, "frequent_buyers", [SegmentConfig("warmup", 1, random_params("frequent_buyers", rng, stores))])

        print(f"\n{'segment type':<18} {'10 segs (s)':>12} {'1000 segs (s)':>14} {'ratio':>7} "
              f"{'members@1000':>13} {'orders/s@1000':>14}")
        for segment_type in args.types:
            few = [SegmentConfig(f"s{i:04d}", 1, random_params(segment_type, rng, stores)) for i in range(10)]
            many = [SegmentConfig(f"s{i:04d}", 1, random_params(segment_type, rng, stores)) for i in range(1000)]
            few_times, many_times, members = [], [], 0
            for _ in range(args.repeat):  # interleaved, so drift on a noisy machine hits both alike
                few_times.append(run(lake, segment_type, few)[0])
                seconds, members = run(lake, segment_type, many)
                many_times.append(seconds)
            few_s, many_s = statistics.median(few_times), statistics.median(many_times)
            print(f"{segment_type:<18} {few_s:>12.2f} {many_s:>14.2f} {many_s / few_s:>7.2f} "
                  f"{members:>13,} {summary.orders / many_s:>14,.0f}", flush=True)
        print("\ntarget: ratio (1000 segments / 10 segments) <= 2.0; medians of", args.repeat, "interleaved runs")


if __name__ == "__main__":
    main()
