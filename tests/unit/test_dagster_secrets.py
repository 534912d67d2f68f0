"""The URLs that can hold passwords reach Dagster as `dg.EnvVar`s: nothing the UI is sent holds a
password, and each Definitions still resolves its own values, however many are built in a process."""

from __future__ import annotations

import os
import traceback

import dagster as dg
import pytest
from dagster._core.remote_representation.external_data import RepositorySnap, ResourceConfigEnvVarSnap
from dagster._serdes import serialize_value

from definitions import build_definitions, build_resources
from resources.settings import Settings
from segmentation_assets.dagster_resources import ConfigStoreResource, ElasticsearchResource, RedisResource
from segmentation_assets.secret_settings import secret_setting

PASSWORDS = ("Pg-pw-7f3a9c", "Es-pw-51d2e8", "Cache-pw-0b6e4d", "Lock-pw-a81c37")


def secret_settings(database: str = "segments") -> Settings:
    return Settings(
        database_url=f"postgresql+psycopg2://app:{PASSWORDS[0]}@db.internal:5432/{database}",
        elasticsearch_url=f"https://elastic:{PASSWORDS[1]}@search.internal:9200",
        redis_url=f"redis://:{PASSWORDS[2]}@cache.internal:6379/0",
        lock_redis_url=f"redis://:{PASSWORDS[3]}@locks.internal:6379/0",
    )


def test_no_password_in_what_the_ui_is_sent() -> None:
    """The code server sends the UI the repository's snapshot: resources and their config, the jobs'
    config schemas with their defaults (the launchpad), schedules, sensors, asset nodes."""
    defs = build_definitions(secret_settings())

    snapshot = serialize_value(RepositorySnap.from_def(defs.get_repository_def()))

    assert [p for p in PASSWORDS if p in snapshot] == []
    assert "db.internal" not in snapshot and "search.internal" not in snapshot  # the URLs are not there at all
    resources = {r.name: r for r in RepositorySnap.from_def(defs.get_repository_def()).resources}
    for name, field, variable in (
        ("config_store", "database_url", "SEGMENTATION_DATABASE_URL"),
        ("search", "url", "SEGMENTATION_ELASTICSEARCH_URL"),
        ("redis", "url", "SEGMENTATION_LOCK_REDIS_URL"),
    ):
        value = resources[name].configured_values[field]
        assert isinstance(value, ResourceConfigEnvVarSnap) and value.name.startswith(variable), (name, value)


def test_each_definitions_resolves_its_own_urls() -> None:
    """Tests build Definitions per namespace in one process: a later one must not change an earlier one's."""
    first, second = secret_settings("first"), secret_settings("second")
    seen: list[str] = []

    @dg.asset
    def reads_urls(config_store: ConfigStoreResource, search: ElasticsearchResource, redis: RedisResource) -> None:
        seen.extend([config_store.database_url, search.url, redis.url])

    first_resources = build_resources(first)
    second_resources = build_resources(second)
    for resources in (first_resources, second_resources):
        assert dg.materialize([reads_urls], resources={k: resources[k] for k in ("config_store", "search", "redis")}).success

    assert seen == [
        first.database_url, first.elasticsearch_url, first.lock_redis_url,
        second.database_url, second.elasticsearch_url, second.lock_redis_url,
    ]
    names = {resources["config_store"].database_url.env_var_name for resources in (first_resources, second_resources)}
    assert len(names) == 2 and all(n.startswith("SEGMENTATION_DATABASE_URL_") for n in names)
    assert not any(PASSWORDS[0] in name for name in names)


def test_the_settings_own_variable_when_the_environment_holds_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"redis://:{PASSWORDS[2]}@cache.internal:6379/0"
    monkeypatch.setenv("SEGMENTATION_REDIS_URL", url)
    assert secret_setting(Settings(), "redis_url").env_var_name == "SEGMENTATION_REDIS_URL"
    other = Settings(redis_url=url.replace("/0", "/1"))
    derived = secret_setting(other, "redis_url").env_var_name
    assert derived.startswith("SEGMENTATION_REDIS_URL_") and os.environ[derived] == other.redis_url


def test_a_value_that_differs_only_in_its_password_gets_a_name_of_its_own() -> None:
    one = Settings(database_url="postgresql+psycopg2://app:first-Pw@db.internal:5432/same")
    two = Settings(database_url="postgresql+psycopg2://app:second-Pw@db.internal:5432/same")
    names = [secret_setting(s, "database_url").env_var_name for s in (one, two, one)]
    assert names[0] == names[2] != names[1]
    assert [os.environ[n] for n in names[:2]] == [one.database_url, two.database_url]


@pytest.mark.parametrize(
    "resource",
    [
        ElasticsearchResource(url=f"http://elastic:{PASSWORDS[1]}@search.internal:not-a-port"),
        RedisResource(url=f"redis://:{PASSWORDS[2]}@cache.internal:not-a-port/0"),
    ],
)
def test_a_url_a_client_refuses_is_not_quoted_with_its_password(resource) -> None:
    with pytest.raises(ValueError) as raised:
        resource.client()
    text = "".join(traceback.format_exception(raised.value))
    assert PASSWORDS[1] not in text and PASSWORDS[2] not in text
    assert "[redacted]" in str(raised.value)
