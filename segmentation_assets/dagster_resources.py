"""Dagster resources: one per external system, typed, each a thin face over a shared client.

A resource's client is made on first use and closed when Dagster tears the resource down (once per
run and process: per step with the multiprocess executor), so a long-lived process that runs many
steps does not keep a connection pool for each of them.
"""

from __future__ import annotations

import dagster as dg
import redis
from elasticsearch import Elasticsearch
from pydantic import PrivateAttr
from pyspark.sql import SparkSession

from resources.config_store.database import session_factory
from resources.config_store.segments import SegmentRepository
from resources.lake.storage import Lake
from resources.publishing.bulk_load import BulkSettings
from resources.publishing.index_writer import SegmentIndexWriter
from resources.publishing.ingestion import IngestionSettings
from segmentation_assets.core.segment_job import (
    SegmentJobRequest,
    SegmentJobResult,
    run_segment_job,
)
from segmentation_assets.core.spark_session import local_spark_session


class LakeResource(dg.ConfigurableResource):
    uri: str

    def lake(self) -> Lake:
        return Lake(self.uri)


class SegmentJobRunner(dg.ConfigurableResource):
    """Runs the Spark job of one segment type and partition: in-process here, on EMR in `emr_runner`."""

    def run(self, context: dg.AssetExecutionContext, request: SegmentJobRequest) -> SegmentJobResult:
        raise NotImplementedError


class LocalSparkRunner(SegmentJobRunner):
    """Local mode: an in-process SparkSession, shared by every step of the run."""

    master: str = "local[*]"
    driver_memory: str = "2g"
    shuffle_partitions: int = 8

    def session(self, lake_uri: str = "") -> SparkSession:
        return local_spark_session(
            master=self.master,
            driver_memory=self.driver_memory,
            shuffle_partitions=self.shuffle_partitions,
            lake_uri=lake_uri,
        )

    def run(self, context: dg.AssetExecutionContext, request: SegmentJobRequest) -> SegmentJobResult:
        return run_segment_job(self.session(request.lake_uri), request)


class ConfigStoreResource(dg.ConfigurableResource):
    database_url: str

    def segments(self) -> SegmentRepository:
        return SegmentRepository(session_factory(self.database_url))


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
    _client: Elasticsearch | None = PrivateAttr(default=None)

    def client(self) -> Elasticsearch:
        if self._client is None:
            self._client = Elasticsearch(
                self.url, request_timeout=self.request_timeout_seconds, retry_on_timeout=True, max_retries=3
            )
        return self._client

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def writer(self) -> SegmentIndexWriter:
        return SegmentIndexWriter(self.client(), self.index_prefix, replicas=self.replicas)

    def ingestion_settings(self) -> IngestionSettings:
        bulk = BulkSettings(
            workers=self.bulk_workers,
            max_request_bytes=self.bulk_bytes,
            max_retries=self.max_retries,
            initial_backoff_seconds=self.retry_backoff_seconds,
        )
        return IngestionSettings(chunk_size=self.chunk_size, bulk=bulk, error_tolerance=self.error_tolerance)


class RedisResource(dg.ConfigurableResource):
    """The coordination Redis: the ingestion locks and the generation counter."""

    url: str
    ingestion_lock_seconds: int = 600
    _client: redis.Redis | None = PrivateAttr(default=None)

    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)
        return self._client

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
