"""How the bulk loader cuts documents into requests (no cluster: the batches are only built)."""

from __future__ import annotations

import orjson
from elasticsearch import Elasticsearch

from resources.publishing.bulk_load import ACTION_OVERHEAD_BYTES, FIRST_REQUEST_BYTES, BulkLoader, BulkSettings

INDEX = "segments-test"


def _request_bytes(batch: list[dict]) -> int:
    return sum(len(a["_source"]) + len(INDEX) + len(a["_id"]) + ACTION_OVERHEAD_BYTES for a in batch)


def _batches(max_request_bytes: int, documents: int, document_bytes: int) -> list[list[dict]]:
    loader = BulkLoader(Elasticsearch("http://127.0.0.1:9"), BulkSettings(max_request_bytes=max_request_bytes))
    docs = ((f"s#{n}", {"customer_ids": "x" * document_bytes}) for n in range(documents))
    return list(loader._requests(INDEX, docs))


def test_requests_start_small_and_double_up_to_the_largest_allowed() -> None:
    largest = 8 * FIRST_REQUEST_BYTES
    batches = _batches(largest, documents=400, document_bytes=20_000)

    sizes = [_request_bytes(b) for b in batches]
    limits = [min(FIRST_REQUEST_BYTES << n, largest) for n in range(len(sizes))]
    assert all(size <= limit for size, limit in zip(sizes[:-1], limits))
    # Each full request is as large as its limit allows: one more document would not fit.
    assert all(limit - size < 20_100 for size, limit in zip(sizes[:-1], limits))
    assert sizes[3] > 4 * FIRST_REQUEST_BYTES  # the doubling reached the largest size
    assert [a["_id"] for b in batches for a in b] == [f"s#{n}" for n in range(400)]  # all, in order, once
    assert orjson.loads(batches[0][0]["_source"]) == {"customer_ids": "x" * 20_000}


def test_a_largest_request_below_the_first_size_caps_every_request() -> None:
    batches = _batches(50_000, documents=40, document_bytes=20_000)

    assert [len(b) for b in batches] == [2] * 20
