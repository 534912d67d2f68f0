"""Dagster resources: one per external system, typed, each a thin face over a shared client.

A resource's client is made on first use and closed when Dagster tears the resource down (once per
run and process: per step with the multiprocess executor), so a long-lived process that runs many
steps does not keep a connection pool for each of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import dagster as dg
from dagster_pyspark import LazyPySparkResource
from elasticsearch import Elasticsearch
from pydantic import PrivateAttr

from resources.config_store.alerts import AlertOutbox, RetryPolicy
from resources.config_store.database import session_factory
from resources.config_store.history import CalculationHistory
from resources.config_store.previews import PreviewRepository
from resources.config_store.segments import SegmentRepository
from resources.json_logs import redact
from resources.lake.storage import Lake
from resources.publishing.bulk_load import BulkSettings
from resources.publishing.index_writer import DEFAULT_MEMBERSHIPS_PER_SHARD, SegmentIndexWriter
from resources.publishing.ingestion import IngestionSettings
from resources.redis_clients import RedisServer, SyncRedis, check_cluster_mode, redis_client
from resources.settings import elasticsearch_hosts
from segmentation_assets.core.segment_job import (
    SegmentJobRequest,
    SegmentJobResult,
    run_segment_job,
)


Client = TypeVar("Client")


def client_for_url(system: str, url: str, make: Callable[[str], Client]) -> Client:
    """`make(url)`, whose errors never quote the URL: some clients' parse errors do, password and all
    (Elasticsearch's `Could not parse URL 'http://user:secret@…'`), and Dagster shows a step's error
    in the UI and keeps it in the event log."""
    try:
        return make(url)
    except Exception as error:
        raise ValueError(f"{system}: cannot use the URL {redact(url)}: {redact(str(error))}") from None


class LakeResource(dg.ConfigurableResource):
    uri: str

    def lake(self) -> Lake:
        return Lake(self.uri)


class SegmentJobRunner(dg.ConfigurableResource):
    """Runs the Spark job of one segment type and partition: in-process here, on EMR in `emr_runner`."""

    def run(self, context: dg.AssetExecutionContext, request: SegmentJobRequest) -> SegmentJobResult:
        raise NotImplementedError


class LocalSparkRunner(SegmentJobRunner):
    """Local mode: an in-process SparkSession, dagster-pyspark's, made when the first step asks for
    it; Spark keeps it for the process, so every step of the run (and any later run of the process)
    shares it. Its settings: `core.spark_session.local_spark_config` for the lake it reads."""

    pyspark: LazyPySparkResource

    def run(self, context: dg.AssetExecutionContext, request: SegmentJobRequest) -> SegmentJobResult:
        return run_segment_job(self.pyspark.spark_session, request)


class ConfigStoreResource(dg.ConfigurableResource):
    database_url: str

    def segments(self) -> SegmentRepository:
        return SegmentRepository(session_factory(self.database_url))

    def history(self) -> CalculationHistory:
        return CalculationHistory(session_factory(self.database_url))

    def alert_outbox(self) -> AlertOutbox:
        return AlertOutbox(session_factory(self.database_url))

    def previews(self) -> PreviewRepository:
        return PreviewRepository(session_factory(self.database_url))


class ElasticsearchResource(dg.ConfigurableResource):
    """The cluster, and how calculations are written into it (see `resources.settings` for each knob)."""

    url: str
    index_prefix: str = "segments"
    request_timeout_seconds: float = 60.0
    chunk_size: int = 5_000  # customer ids per chunk document
    bulk_bytes: int = 8 * 1024 * 1024
    bulk_workers: int = 2
    max_retries: int = 5
    retry_backoff_seconds: float = 0.5
    error_tolerance: float = 0.0
    retention: int = 3
    replicas: str = "0-1"
    shards: int = 0  # 0: sized from each calculation's memberships
    memberships_per_shard: int = DEFAULT_MEMBERSHIPS_PER_SHARD
    _client: Elasticsearch | None = PrivateAttr(default=None)

    def client(self) -> Elasticsearch:
        if self._client is None:
            timeout = self.request_timeout_seconds
            self._client = client_for_url(
                "Elasticsearch",
                self.url,
                lambda url: Elasticsearch(elasticsearch_hosts(url), request_timeout=timeout, retry_on_timeout=True, max_retries=3),
            )
        return self._client

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def writer(self) -> SegmentIndexWriter:
        return SegmentIndexWriter(
            self.client(),
            self.index_prefix,
            replicas=self.replicas,
            shards=self.shards,
            memberships_per_shard=self.memberships_per_shard,
        )

    def ingestion_settings(self) -> IngestionSettings:
        bulk = BulkSettings(
            workers=self.bulk_workers,
            max_request_bytes=self.bulk_bytes,
            max_retries=self.max_retries,
            initial_backoff_seconds=self.retry_backoff_seconds,
        )
        return IngestionSettings(chunk_size=self.chunk_size, bulk=bulk, error_tolerance=self.error_tolerance)


class RedisResource(dg.ConfigurableResource):
    """The coordination Redis: the ingestion locks and the generation counter. `cluster`: the URL
    names a node of a Redis Cluster; checked against the server when the client is made, and a
    mismatch fails the step with a message naming `cluster_setting`."""

    url: str
    ingestion_lock_seconds: int = 600
    cluster: bool = False
    # The settings that gave `url` and `cluster`, named in the messages.
    url_setting: str = "SEGMENTATION_REDIS_URL"
    cluster_setting: str = "SEGMENTATION_REDIS_CLUSTER"
    cluster_follows: str | None = None  # the setting `cluster_setting` follows while unset
    _client: SyncRedis | None = PrivateAttr(default=None)

    @classmethod
    def for_server(cls, server: RedisServer, url: str | None = None, **fields: object) -> RedisResource:
        """The resource of `server` (`url`: what to give Dagster for its URL, a `dg.EnvVar` where it is a secret)."""
        return cls(
            url=url or server.url,  # type: ignore[arg-type]
            cluster=server.cluster,
            url_setting=server.url_setting,
            cluster_setting=server.cluster_setting,
            cluster_follows=server.cluster_follows,
            **fields,  # type: ignore[arg-type]
        )

    def client(self) -> SyncRedis:
        if self._client is None:
            server = RedisServer(self.url, self.cluster, self.url_setting, self.cluster_setting, self.cluster_follows)
            check_cluster_mode(server)  # its message names the setting to change, and no password
            self._client = client_for_url(
                "Redis", self.url, lambda url: redis_client(server, socket_timeout=5, socket_connect_timeout=5)
            )
        return self._client

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class AlertWebhookResource(dg.ConfigurableResource):
    """Where alerts are posted: a Slack-compatible incoming webhook. No URL: they are only recorded.

    The URL is a secret: `build_resources` passes it as a `dg.EnvVar`, which the UI shows by name."""

    url: str = ""
    timeout_seconds: float = 5.0  # the whole POST
    tick_budget_seconds: float = 20.0  # per tick of the delivery sensor, under Dagster's 60 s per tick
    first_retry_seconds: float = 30.0
    max_retry_seconds: float = 1800.0
    max_attempts: int = 10

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.first_retry_seconds, self.max_retry_seconds, self.max_attempts)
