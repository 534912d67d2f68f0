"""Local Spark through dagster-pyspark's `LazyPySparkResource` against the process-wide session of
`local_spark_session`: what each costs where the in-process executor runs the segment jobs.

Each mode runs in a fresh process (so each pays its own JVM start), `--repeat` times, the modes in
turn; medians:

- `session`: time to the first usable session, then to a second one in the same process.
- `run`: a Dagster run of three steps that each take the session (in-process executor, as
  definitions.py), run twice in one process (as `segmentation run` does once, a test session many
  times): wall time of each run, and how many sessions and JVMs the steps saw.

    .venv/bin/python bench/bench_spark_session.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
from dagster_pyspark import LazyPySparkResource

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from segmentation_assets.core.spark_session import local_spark_config, local_spark_session  # noqa: E402

MODES = ("local_spark_session", "LazyPySparkResource")


class ProcessSession(dg.ConfigurableResource):
    """LocalSparkRunner's session before dagster-pyspark."""

    def session(self):
        return local_spark_session()


class LazySession(dg.ConfigurableResource):
    """LocalSparkRunner's session through dagster-pyspark."""

    pyspark: LazyPySparkResource

    def session(self):
        return self.pyspark.spark_session


def session_getter(mode: str):
    if mode == "local_spark_session":
        return local_spark_session
    return lambda: LazyPySparkResource(spark_config=local_spark_config()).spark_session


def measure_session(mode: str) -> dict[str, float]:
    get = session_getter(mode)
    started = time.perf_counter()
    get().range(1_000).count()
    first = time.perf_counter() - started
    started = time.perf_counter()
    get().range(1_000).count()
    return {"first_session_s": first, "second_session_s": time.perf_counter() - started}


def measure_runs(mode: str) -> dict[str, float]:
    seen: list[tuple[str, int]] = []

    def step(name: str) -> dg.AssetsDefinition:
        @dg.asset(name=name, required_resource_keys={"spark"})
        def _step(context) -> None:
            session = context.resources.spark.session()
            session.range(100_000).selectExpr("sum(id)").collect()
            seen.append((session.sparkContext.applicationId, id(session._jvm)))

        return _step

    if mode == "local_spark_session":
        resource: dg.ConfigurableResource = ProcessSession()
    else:
        resource = LazySession(pyspark=LazyPySparkResource(spark_config=local_spark_config()))
    assets = [step(f"step_{n}") for n in range(3)]
    timings = {}
    for run in ("first_run_s", "second_run_s"):
        started = time.perf_counter()
        result = dg.materialize(assets, resources={"spark": resource}, instance=dg.DagsterInstance.ephemeral())
        timings[run] = time.perf_counter() - started
        assert result.success
    timings["sessions_seen"] = len({app for app, _ in seen})
    timings["jvms_seen"] = len({jvm for _, jvm in seen})
    timings["steps"] = len(seen)
    return timings


def in_fresh_process(kind: str, mode: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, mode], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--child", nargs=2)
    args = parser.parse_args()
    if args.child:
        kind, mode = args.child
        print(json.dumps(measure_session(mode) if kind == "session" else measure_runs(mode)))
        return
    for kind in ("session", "run"):
        samples: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
        for _ in range(args.repeat):  # the modes take turns, so that a busy moment costs both alike
            for mode in MODES:
                samples[mode].append(in_fresh_process(kind, mode))
        for mode, taken in samples.items():
            medians = {key: round(statistics.median(s[key] for s in taken), 3) for key in taken[0]}
            print(f"{kind:<8} {mode:<20} {medians}")


if __name__ == "__main__":
    main()
