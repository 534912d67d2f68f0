"""Which catalogs a process keeps: the latest, up to a count and a size in bytes."""

from __future__ import annotations

import pytest

from resources.serving import reader as segment_reader
from resources.serving.reader import SegmentReader


def _reader() -> SegmentReader:
    return SegmentReader(None, "p", None, catalog_budget_seconds=1)  # type: ignore[arg-type]  # no I/O here


def _serialized(segments: int, answer_bytes: int) -> bytes:
    return b"\n".join(f"s{n}".encode() + b"\t" + b"x" * answer_bytes for n in range(segments))


def test_the_catalogs_read_longest_ago_go_past_the_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segment_reader, "CATALOG_BYTES_KEPT", 1_000)
    reader = _reader()
    for index in ("a", "b", "c"):
        reader.adopt_catalog(index, _serialized(4, 100))  # 400 bytes of answers each
    assert reader.loaded_catalog("a") is None  # 1,200 bytes: the oldest left
    assert [len(reader.loaded_catalog(i) or {}) for i in ("b", "c")] == [4, 4]


def test_a_catalog_larger_than_the_size_is_still_kept_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segment_reader, "CATALOG_BYTES_KEPT", 1_000)
    reader = _reader()
    reader.adopt_catalog("small", _serialized(2, 10))
    reader.adopt_catalog("huge", _serialized(20, 100))
    assert reader.loaded_catalog("small") is None
    assert len(reader.loaded_catalog("huge") or {}) == 20  # the one just read is answered from


def test_the_count_still_bounds_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segment_reader, "CATALOGS_KEPT", 2)
    reader = _reader()
    for index in ("a", "b", "c"):
        reader.adopt_catalog(index, _serialized(1, 1))
    assert [reader.loaded_catalog(i) is not None for i in ("a", "b", "c")] == [False, True, True]
