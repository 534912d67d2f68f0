"""The shards of a calculation's index, sized from its memberships, and the replicas setting's two
forms: the sizing rule, the index settings each form gives, and the errors a wrong value gets."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from definitions import build_resources
from resources.publishing.index_writer import (
    DEFAULT_MEMBERSHIPS_PER_SHARD,
    MAX_SIZED_SHARDS,
    SegmentIndexWriter,
    replica_settings,
    shard_count,
)
from resources.settings import Settings, elasticsearch_hosts


@pytest.mark.parametrize(
    "memberships, per_shard, override, shards",
    [
        (0, 100, 0, 1),  # an empty calculation still gets a shard
        (1, 100, 0, 1),
        (100, 100, 0, 1),
        (101, 100, 0, 2),  # rounded up
        (1_000, 100, 0, 10),
        (10**12, 100, 0, MAX_SIZED_SHARDS),  # never more than the maximum
        (1_000, 100, 3, 3),  # the override wins over the size...
        (10**12, 100, 40, 40),  # ... and over the maximum
        (499_999_999, DEFAULT_MEMBERSHIPS_PER_SHARD, 0, 1),
        (1_000_000_001, DEFAULT_MEMBERSHIPS_PER_SHARD, 0, 3),
    ],
)
def test_shards_are_one_per_memberships_per_shard_rounded_up_from_1_to_the_maximum(
    memberships, per_shard, override, shards
) -> None:
    assert shard_count(memberships, per_shard, override) == shards


def test_the_default_size_is_500m_memberships_a_shard() -> None:
    assert DEFAULT_MEMBERSHIPS_PER_SHARD == Settings().index_memberships_per_shard == 500_000_000
    assert Settings().index_shards == 0  # sized


@pytest.mark.parametrize(
    "value, settings",
    [
        ("1", {"number_of_replicas": 1, "auto_expand_replicas": False}),
        ("0", {"number_of_replicas": 0, "auto_expand_replicas": False}),
        ("0-1", {"auto_expand_replicas": "0-1"}),
        ("1-all", {"auto_expand_replicas": "1-all"}),
    ],
)
def test_replicas_are_a_number_or_an_auto_expand_range(value: str, settings: dict[str, Any], monkeypatch) -> None:
    monkeypatch.setenv("SEGMENTATION_INDEX_REPLICAS", value)
    assert Settings().index_replicas == value
    assert replica_settings(value) == settings


@pytest.mark.parametrize("value", ["", "one", "-1", "1-", "2-1", "1-al", "0-1-2", " 1", "1.5"])
def test_a_wrong_replicas_setting_fails_naming_it(value: str, monkeypatch) -> None:
    monkeypatch.setenv("SEGMENTATION_INDEX_REPLICAS", value)
    with pytest.raises(ValidationError, match="SEGMENTATION_INDEX_REPLICAS must be a number of replicas"):
        Settings()


def test_the_writer_refuses_a_wrong_replicas_value() -> None:
    with pytest.raises(ValueError, match="SEGMENTATION_INDEX_REPLICAS must be a number"):
        SegmentIndexWriter(None, "segments", replicas="2-1")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "variable, value, field",
    [
        ("SEGMENTATION_INDEX_SHARDS", "-1", "index_shards"),
        ("SEGMENTATION_INDEX_SHARDS", "1025", "index_shards"),
        ("SEGMENTATION_INDEX_SHARDS", "two", "index_shards"),
        ("SEGMENTATION_INDEX_MEMBERSHIPS_PER_SHARD", "0", "index_memberships_per_shard"),
    ],
)
def test_wrong_shard_settings_fail_naming_them(variable: str, value: str, field: str, monkeypatch) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=field):
        Settings()


class RecordingIndices:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def create(self, **kwargs: Any) -> None:
        self.calls.append(("create", kwargs))

    def refresh(self, **kwargs: Any) -> None:
        self.calls.append(("refresh", kwargs))

    def put_settings(self, **kwargs: Any) -> None:
        self.calls.append(("put_settings", kwargs))


class RecordingElasticsearch:
    def __init__(self) -> None:
        self.indices = RecordingIndices()

    def options(self, **_: Any) -> RecordingElasticsearch:
        return self

    @property
    def cluster(self) -> Any:
        return type("Cluster", (), {"health": staticmethod(lambda **_: {})})()


def test_the_index_is_created_with_its_sized_shards_recorded_in_its_meta_and_loaded_without_replicas() -> None:
    es = RecordingElasticsearch()
    writer = SegmentIndexWriter(es, "segments", replicas="1", memberships_per_shard=1_000)  # type: ignore[arg-type]

    assert writer.create_index("segments-x", {"segment_type": "t"}, memberships=2_500) == 3
    writer.finish_loading("segments-x")

    [(_, create), _, (_, restored)] = es.indices.calls
    assert create["settings"] == {"number_of_shards": 3, "number_of_replicas": 0, "refresh_interval": "-1"}
    assert create["mappings"]["_meta"] == {"segment_type": "t", "shards": 3}
    assert restored["settings"] == {"refresh_interval": None, "number_of_replicas": 1, "auto_expand_replicas": False}


def test_an_index_made_without_its_memberships_has_one_shard_or_the_override() -> None:
    es = RecordingElasticsearch()
    SegmentIndexWriter(es, "segments").create_index("a", {})  # type: ignore[arg-type]
    SegmentIndexWriter(es, "segments", shards=4).create_index("b", {}, memberships=10)  # type: ignore[arg-type]
    assert [kwargs["settings"]["number_of_shards"] for _, kwargs in es.indices.calls] == [1, 4]


def test_the_dagster_resource_gets_the_shard_and_replica_settings(monkeypatch) -> None:
    monkeypatch.setenv("SEGMENTATION_INDEX_SHARDS", "6")
    monkeypatch.setenv("SEGMENTATION_INDEX_MEMBERSHIPS_PER_SHARD", "1000")
    monkeypatch.setenv("SEGMENTATION_INDEX_REPLICAS", "2")
    search = build_resources(Settings())["search"]
    assert (search.shards, search.memberships_per_shard, search.replicas) == (6, 1000, "2")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "url, hosts",
    [
        ("http://127.0.0.1:9200", ["http://127.0.0.1:9200"]),
        ("http://a:9200,http://b:9200", ["http://a:9200", "http://b:9200"]),
        (" https://u:p@a:9200 , https://u:p@b:9200 ,", ["https://u:p@a:9200", "https://u:p@b:9200"]),
    ],
)
def test_the_elasticsearch_url_lists_one_node_or_several(url: str, hosts: list[str]) -> None:
    assert elasticsearch_hosts(url) == hosts
