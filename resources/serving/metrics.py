"""Prometheus metrics of the serving path: request latency, cache, Elasticsearch, circuit breakers.

With several API workers, `segmentation api` points `PROMETHEUS_MULTIPROC_DIR` at a fresh folder
before the workers start, so that `/metrics` adds up every worker (prometheus-client's
multiprocess mode); with one worker the metrics live in the process.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Lookups are expected in single milliseconds; the tail buckets show a budget being hit.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

HTTP_LATENCY = Histogram(
    "segmentation_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template, method and status.",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
CACHE_LOOKUPS = Counter(
    "segmentation_cache_lookups_total",
    "Lookup cache reads by kind (m: memberships, s: segment summary, c: catalog, h: membership check) and "
    "result (hit_near, hit, miss; stale: found, but a type switched since it was written).",
    ["kind", "result"],
)
CACHE_ERRORS = Counter(
    "segmentation_cache_errors_total",
    "Redis operations that failed or were skipped while its breaker was open; the cache was bypassed.",
    ["operation"],
)
SEARCH_LATENCY = Histogram(
    "segmentation_elasticsearch_request_duration_seconds",
    "Time of Elasticsearch requests made by the API, by operation and outcome.",
    ["operation", "outcome"],
    buckets=LATENCY_BUCKETS,
)
BREAKER_STATE = Gauge(
    "segmentation_circuit_breaker_state",
    "Circuit breaker state per dependency: 0 closed, 1 half-open, 2 open.",
    ["circuit"],
    multiprocess_mode="max",  # across workers: the worst state any worker is in
)
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}


def prepare_multiprocess_dir() -> Path:
    """A fresh folder for the workers' metric files, set in the environment they inherit."""
    existing = os.environ.get(MULTIPROC_ENV)
    if existing:
        return Path(existing)
    folder = Path(tempfile.mkdtemp(prefix="segmentation-metrics-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder


def metrics_payload() -> tuple[bytes, str]:
    """Prometheus text of every worker (multiprocess mode) or of this process."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
