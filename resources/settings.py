"""Every setting of the platform, read from `SEGMENTATION_*` environment variables."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def checked_replicas(value: str) -> str:
    """`SEGMENTATION_INDEX_REPLICAS` as given, if it is a number of replicas (`1`) or an auto-expand
    range from low to high (`0-1`, `1-all`); else a ValueError naming the setting."""
    low, _, high = value.partition("-")
    if not re.fullmatch(r"\d+(-(\d+|all))?", value) or (high.isdigit() and int(high) < int(low)):
        raise ValueError(
            f"SEGMENTATION_INDEX_REPLICAS must be a number of replicas (`1`) or an auto-expand range "
            f"from low to high (`0-1`, `1-all`), not {value!r}"
        )
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SEGMENTATION_", extra="ignore")

    lake_uri: str = Field(
        default=str(PROJECT_ROOT / "data" / "lake"),
        description="Root of the data lake: a local path or s3://bucket/prefix.",
    )
    database_url: str = "postgresql+psycopg2://segmentation:segmentation@127.0.0.1:5432/segmentation"
    # One URL, or several separated by commas: the nodes the clients spread their requests over
    # (`elasticsearch_hosts`), so that a stopped node takes no lookup with it.
    elasticsearch_url: str = "http://127.0.0.1:9200"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # True when `redis_url` names a node of a Redis Cluster: the clients then follow the cluster's
    # slots (resources/redis_clients.py). Checked against the server at startup.
    redis_cluster: bool = False
    # Redis for coordination: the ingestion locks and the generation counter. Give it a Redis that
    # never evicts (`noeviction`): the cache's evicts keys with a TTL, and a lock has one.
    lock_redis_url: str | None = None
    # Whether `lock_redis_url` names a node of a Redis Cluster; unset: as `redis_cluster` says.
    # Without `lock_redis_url` the coordination Redis is the cache's, and `redis_cluster` decides.
    lock_redis_cluster: bool | None = None
    spark_mode: Literal["local", "emr"] = "local"
    index_prefix: str = Field(default="segments", pattern=r"^[a-z0-9][a-z0-9_-]{0,40}$")

    # Where `segmentation services up` keeps downloads, data and logs of the local servers.
    state_dir: Path = PROJECT_ROOT / ".local"
    dagster_home: Path = PROJECT_ROOT / ".dagster_home"

    partition_granularity: Literal["daily", "hourly"] = "daily"
    partitions_start_date: str = "2026-01-01"
    # When each type's schedule computes the window that just closed (UTC; hourly uses the minute).
    refresh_hour_of_day: int = Field(default=1, ge=0, le=23)
    refresh_minute_of_hour: int = Field(default=15, ge=0, le=59)
    # Refresh on change (segmentation_assets/refresh.py): a changed type is recomputed once its
    # configs have been quiet this long, or this long after its first change if edits keep coming.
    # Changes are served within 10 minutes while max wait + one run stay under that.
    refresh_settle_seconds: float = Field(
        default=30.0,
        ge=0,
        le=300,
        description="A type whose configs changed is recomputed once no further change came for this long.",
    )
    refresh_max_wait_seconds: float = Field(
        default=300.0,
        ge=0,
        le=540,
        description="...or this long after its first change not yet recomputed, if changes keep coming.",
    )
    # Previews (segmentation_assets/previews.py): a preview still running this long after its run
    # started it is failed; finished previews are deleted this long after their request.
    preview_timeout_seconds: float = Field(
        default=900.0,
        ge=60,
        description="A preview not finished this long after its run started it is failed, as timed out.",
    )
    preview_retention_hours: float = Field(
        default=168.0,
        ge=24,
        description="Finished previews are deleted this long after they were requested (at least 24 h).",
    )
    # Above this share of raw rows left out as invalid, the calculation's data-quality check warns.
    max_rejected_fraction: float = 0.01
    # Calculation results older than this leave the lake (S3 lifecycle rule, or local cleanup).
    results_retention_days: int = Field(default=30, ge=1)
    # Spark mode `emr`: the EMR Serverless application that runs the segment jobs.
    emr_application_id: str = ""
    emr_execution_role_arn: str = ""
    emr_code_uri: str = Field(default="", description="s3:// prefix for the job's code and Pipes messages.")
    # A failed step (calculation, index, alias) is tried again this many times, the first after this
    # long, then twice as long each time (segmentation_assets/conventions.py).
    step_max_retries: int = Field(default=3, ge=0, le=10)
    step_retry_delay_seconds: float = Field(default=30.0, ge=0, le=3600)
    spark_driver_memory: str = "2g"
    spark_shuffle_partitions: int = 8

    # Store ingestion (resources/publishing/ingestion.py): defaults chosen by bench/bench_ingestion.py.
    ingest_chunk_size: int = Field(default=5_000, ge=1, le=500_000)  # customer ids per chunk document
    ingest_bulk_bytes: int = Field(default=8 * 1024 * 1024, ge=64 * 1024, le=90 * 1024 * 1024)  # per bulk request
    ingest_bulk_workers: int = Field(default=2, ge=1, le=32)
    ingest_max_retries: int = Field(default=5, ge=0)  # per bulk request, on 429, 5xx and lost connections
    ingest_retry_backoff_seconds: float = Field(default=0.5, gt=0)  # first wait; doubles each retry, up to 30 s
    # The share of chunk documents that may still fail after retries, or be lost with an unreadable
    # results part; their segments keep being served from the previous calculation and a warning
    # check names them. 0: any failure fails.
    ingest_error_tolerance: float = Field(default=0.0, ge=0, le=1)
    ingest_lock_seconds: int = Field(default=600, ge=10)
    index_retention: int = Field(default=3, ge=1)  # verified indices kept per segment type
    # Replicas of an index once loaded (none while loading): a number (`1`), or an auto-expand
    # range (`0-1`, `1-all`) that follows how many data nodes the cluster has.
    index_replicas: str = "0-1"
    # Primary shards of a new index: 0 sizes them from the calculation's memberships, one shard per
    # `index_memberships_per_shard` (resources/publishing/index_writer.py `shard_count`); any other
    # number is used as it is.
    index_shards: int = Field(default=0, ge=0, le=1024)
    # Measured ~12 bytes per membership with 9-character ids, ~85 with 36-character random ones
    # (docs/decisions.md): 500M keeps a shard under Elastic's 50 GB ceiling either way.
    index_memberships_per_shard: int = Field(default=500_000_000, ge=1)

    # Serving (the API): a time budget per Elasticsearch request, the circuit breakers, the Redis cache.
    api_search_budget_seconds: float = Field(default=0.25, gt=0, le=30)
    api_export_budget_seconds: float = Field(default=2.0, gt=0, le=60)
    api_breaker_failures: int = Field(default=5, ge=1)
    api_breaker_open_seconds: float = Field(default=5.0, gt=0)
    api_redis_timeout_seconds: float = Field(default=0.25, gt=0, le=5)
    lookup_cache_ttl_seconds: int = Field(default=3600, ge=1)
    lookup_generation_refresh_seconds: float = Field(default=1.0, ge=0, le=60)
    lookup_near_cache_entries: int = Field(default=10_000, ge=0)  # per API process; 0 turns it off
    lookup_near_cache_megabytes: int = Field(default=64, ge=1)  # and at most this much of answers
    # A client sends a request's headers within this long (from its first byte), and its body
    # within this long after them, or gets 408 (api/http_limits.py).
    api_head_read_seconds: float = Field(default=10.0, gt=0, le=300)
    api_body_read_seconds: float = Field(default=30.0, gt=0, le=600)
    # API keys issued before tokens carried a checksum; false refuses them without a query.
    api_accept_legacy_keys: bool = True

    # Archived segments leave lookups within 60 s; each API process re-reads them this often.
    archived_refresh_seconds: float = Field(default=10.0, gt=0, le=50)

    # The console (api/console/): a sign-in unused this long ends (it lasts at most 24 h anyway).
    console_session_idle_seconds: float = Field(
        default=8 * 3600.0,
        gt=0,
        le=24 * 3600,
        description="A console session not used for this long ends; its next form goes back to sign-in, input kept.",
    )

    # Alerts for the engineers (segmentation_assets/alerts.py): failed runs and failed checks.
    alert_webhook_url: SecretStr = Field(
        default=SecretStr(""),
        description="Slack-compatible incoming webhook the alerts are posted to; a secret, never logged. "
        "Empty: alerts are only recorded, in the config store's `alerts` table.",
    )

    @field_validator("index_replicas")
    @classmethod
    def _replicas_number_or_range(cls, value: str) -> str:
        return checked_replicas(value)

    @property
    def partition_seconds(self) -> int:
        """How long a partition's window is: how often each type's calculation is renewed."""
        return 3600 if self.partition_granularity == "hourly" else 86_400

    @property
    def coordination_redis_url(self) -> str:
        """Where the ingestion locks and the generation counter live: `lock_redis_url`, else the cache's."""
        return self.lock_redis_url or self.redis_url

    @property
    def coordination_redis_cluster(self) -> bool:
        """Whether `coordination_redis_url` names a node of a Redis Cluster."""
        if self.lock_redis_url and self.lock_redis_cluster is not None:
            return self.lock_redis_cluster
        return self.redis_cluster


@lru_cache
def get_settings() -> Settings:
    return Settings()


def elasticsearch_hosts(url: str) -> list[str]:
    """The node URLs that `SEGMENTATION_ELASTICSEARCH_URL` lists (one, or several separated by commas)."""
    return [part.strip() for part in url.split(",") if part.strip()] or [url]
