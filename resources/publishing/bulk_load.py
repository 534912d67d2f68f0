"""Sends documents to one index: several workers, retries with backoff, every final failure named.

Documents are serialized once (orjson) in the caller's thread, which gives each bulk request its
exact size; the workers only wait on the network. Each worker sends one request at a time through
`helpers.bulk`. Items answered with 429 or a 5xx status, and requests that cannot reach the
cluster, are sent again, only those, with exponential backoff and jitter (tenacity):
`parallel_bulk` alone would report them as failed. The client's own retries are switched off for
these requests, so that all of them follow this one backoff.

What still fails after the last retry is returned per document; the caller decides what a failure
means. A cluster still unreachable after the last retry raises `ElasticsearchUnreachable`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import elastic_transport
import orjson
from elasticsearch import Elasticsearch, helpers
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# What a bulk request adds around each document besides its index and id: the action line's JSON.
ACTION_OVERHEAD_BYTES = 40
# The first bulk request of a load; each next one is twice as large, up to the configured size.
FIRST_REQUEST_BYTES = 512 * 1024


class ElasticsearchUnreachable(RuntimeError):
    pass


@dataclass(frozen=True)
class BulkSettings:
    workers: int = 2
    max_request_bytes: int = 8 * 1024 * 1024
    max_retries: int = 5
    initial_backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0


@dataclass(frozen=True)
class FailedDocument:
    id: str
    status: int | str
    reason: str


@dataclass
class LoadReport:
    documents: int = 0  # loaded
    requests: int = 0
    retried_documents: int = 0  # how many times a document was sent again
    failed: list[FailedDocument] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, other: LoadReport) -> None:
        self.documents += other.documents
        self.requests += other.requests
        self.retried_documents += other.retried_documents
        self.failed += other.failed


class _RetryItems(Exception):
    """Some items of a request were answered with a status worth retrying."""

    def __init__(self, pending: list[dict[str, Any]], failures: list[FailedDocument]) -> None:
        super().__init__(f"{len(pending)} documents to send again")
        self.pending = pending
        self.failures = failures


def _reason(info: dict[str, Any]) -> str:
    error = info.get("error")
    if isinstance(error, dict):
        return f"{error.get('type')}: {error.get('reason')}"
    return str(error)[:500]


class BulkLoader:
    def __init__(self, client: Elasticsearch, settings: BulkSettings) -> None:
        # All retries happen here, with backoff; the transport's immediate ones would only add load.
        self._es = client.options(max_retries=0, retry_on_status=(), retry_on_timeout=False)
        self._settings = settings

    def load(self, index: str, documents: Iterable[tuple[str, dict[str, Any]]]) -> LoadReport:
        """Indexes `(id, document)` pairs into `index`; answers what was loaded, retried and failed."""
        started = time.monotonic()
        report = LoadReport()

        def collect(done: Iterable[Future[LoadReport]]) -> None:
            for future in done:
                report.add(future.result())  # re-raises ElasticsearchUnreachable

        pool = ThreadPoolExecutor(self._settings.workers, thread_name_prefix="bulk")
        in_flight: set[Future[LoadReport]] = set()
        try:
            for batch in self._requests(index, documents):
                # Bounded: Parquet is read only as fast as Elasticsearch takes the documents.
                if len(in_flight) >= 2 * self._settings.workers:
                    done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                    collect(done)
                in_flight.add(pool.submit(self._send, batch))
            collect(wait(in_flight).done)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        report.seconds = round(time.monotonic() - started, 3)
        return report

    def _requests(self, index: str, documents: Iterable[tuple[str, dict[str, Any]]]) -> Iterator[list[dict[str, Any]]]:
        """Batches of documents, each one request. The first requests are smaller, doubling up to
        `max_request_bytes`: Elasticsearch starts indexing as soon as the first documents are
        read, instead of idling until a full request is."""
        batch: list[dict[str, Any]] = []
        size = 0
        limit = min(FIRST_REQUEST_BYTES, self._settings.max_request_bytes)
        for doc_id, document in documents:
            body = orjson.dumps(document)
            cost = len(body) + len(index) + len(doc_id) + ACTION_OVERHEAD_BYTES
            if batch and size + cost > limit:
                yield batch
                batch, size = [], 0
                limit = min(2 * limit, self._settings.max_request_bytes)
            batch.append({"_index": index, "_id": doc_id, "_source": body})
            size += cost
        if batch:
            yield batch

    def _send(self, batch: list[dict[str, Any]]) -> LoadReport:
        report = LoadReport()
        pending = batch
        retrying = Retrying(
            stop=stop_after_attempt(self._settings.max_retries + 1),
            # initial * 2**n plus up to `initial` of jitter, so that workers turned away together spread out
            wait=wait_exponential_jitter(
                multiplier=self._settings.initial_backoff_seconds,
                jitter=self._settings.initial_backoff_seconds,
                max=self._settings.max_backoff_seconds,
            ),
            retry=retry_if_exception_type((_RetryItems, elastic_transport.ConnectionError, elastic_transport.ConnectionTimeout)),
        )
        try:
            for attempt in retrying:
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        report.retried_documents += len(pending)
                    report.requests += 1
                    try:
                        self._send_once(pending, report)
                    except _RetryItems as partial:
                        pending = partial.pending  # only these go again
                        raise
        except RetryError as exhausted:
            error = exhausted.last_attempt.exception()
            if isinstance(error, _RetryItems):
                report.failed += error.failures
            else:
                raise ElasticsearchUnreachable(
                    f"Elasticsearch did not answer after {self._settings.max_retries + 1} attempts: {error}"
                ) from error
        return report

    def _send_once(self, pending: list[dict[str, Any]], report: LoadReport) -> None:
        loaded, errors = helpers.bulk(
            self._es,
            pending,
            chunk_size=len(pending),
            max_chunk_bytes=2 * self._settings.max_request_bytes,  # already cut to size: one request
            raise_on_error=False,
            raise_on_exception=False,
        )
        report.documents += loaded
        retry: dict[str, FailedDocument] = {}
        for error in errors:  # type: ignore[union-attr]
            info = next(iter(error.values()))
            failure = FailedDocument(str(info.get("_id")), info.get("status", "N/A"), _reason(info))
            if failure.status in RETRY_STATUSES:
                retry[failure.id] = failure
            else:
                report.failed.append(failure)
        if retry:
            raise _RetryItems([a for a in pending if a["_id"] in retry], list(retry.values()))
