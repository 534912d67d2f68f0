"""Alerts and dashboard (docs/observability/) against what the API really exports.

promtool (Debian's `prometheus` package) checks the rules and runs their unit tests; the metric
names and label values the rules and panels select must all appear in `/metrics` after traffic
that includes a cache hit, an Elasticsearch outage and a published calculation.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from resources.settings import PROJECT_ROOT, Settings
from tests.reliability.platform import Proxies, make_keys, publish_calculation, serving

pytestmark = pytest.mark.integration

OBSERVABILITY = PROJECT_ROOT / "docs" / "observability"
ALERTS = OBSERVABILITY / "alerts.yml"
DASHBOARD = OBSERVABILITY / "grafana-dashboard.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian: apt-get install -y prometheus); the rules are unchecked"
)

SELECTOR = re.compile(r"\b(segmentation_[a-z0-9_]+)\s*(\{[^}]*\})?")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


def alert_expressions() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    def panels(items: list[dict]) -> Iterator[dict]:
        for item in items:
            yield item
            yield from panels(item.get("panels", []))

    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in panels(dashboard["panels"]) for t in p.get("targets", [])]


def selectors(expressions: list[str]) -> set[tuple[str, tuple[tuple[str, str, str], ...]]]:
    """(metric, ((label, operator, value), ...)) of every series selector in the expressions."""
    found = set()
    for expression in expressions:
        for name, labels in SELECTOR.findall(expression):
            matchers = tuple(sorted(MATCHER.findall(labels or "")))
            found.add((name, tuple((k, op, v.replace("\\\\", "\\")) for k, op, v in matchers)))
    return found


@needs_promtool
def test_the_alert_rules_are_valid_and_their_unit_tests_pass() -> None:
    checked = subprocess.run([PROMTOOL, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [PROMTOOL, "test", "rules", "alerts_test.yml"], cwd=OBSERVABILITY, capture_output=True, text=True, timeout=120
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


@needs_promtool
def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses expressions only inside rule files: one recording rule per panel query.
    rules = [
        {"record": f"dashboard:query_{n}", "expr": e.replace("$__rate_interval", "5m")}
        for n, e in enumerate(dashboard_expressions())
    ]
    assert len(rules) >= 15
    rule_file = tmp_path / "dashboard_rules.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = subprocess.run([PROMTOOL, "check", "rules", str(rule_file)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_alerts_cover_freshness_error_rate_latency_and_the_breaker() -> None:
    names = {name for name, _ in selectors(alert_expressions())}
    assert {
        "segmentation_served_calculated_timestamp_seconds",  # freshness
        "segmentation_http_request_duration_seconds_count",  # error rate
        "segmentation_http_request_duration_seconds_bucket",  # p99
        "segmentation_circuit_breaker_state",  # breaker open
    } <= names
    runbook = (PROJECT_ROOT / "docs" / "operations.md").read_text().lower()
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            anchor = rule["annotations"]["runbook"].split("#", 1)[1]
            assert f"### {anchor}" in runbook, f"docs/operations.md says nothing under ### {rule['alert']}"


@pytest.fixture(scope="module")
def traffic(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, list[tuple[dict[str, str], float]]], dict]:
    """(metric sample name -> [(labels, value)] from /metrics after traffic of every kind,
    the published calculation's index metadata)."""
    published = publish_calculation(settings, "2026-11-20", {"seg-a": [f"c{n:03d}" for n in range(30)], "seg-empty": []})
    keys = make_keys(settings, "observability")
    proxies = Proxies.open(settings)
    try:
        with serving(
            proxies.settings_for_api(settings),
            tmp_path_factory.mktemp("state"),
            api_breaker_failures=2,
            lookup_generation_refresh_seconds=0.0,
        ) as api:
            for _ in range(2):  # a miss, then a hit
                assert api.get("/v1/customers/c001/segments", headers=keys.as_reader).status_code == 200
            assert api.get("/v1/segments/seg-a/members/c001", headers=keys.as_reader).status_code == 200
            assert api.get("/v1/segments/seg-a/members", headers=keys.as_reader).status_code == 200
            assert api.get("/v1/segments/seg-a/stats", headers=keys.as_reader).status_code == 200
            assert api.get("/v1/segments", headers=keys.as_reader).status_code == 403
            proxies.elasticsearch.refuse()
            proxies.redis.refuse()
            statuses = [api.get(f"/v1/customers/down-{n}/segments", headers=keys.as_reader).status_code for n in range(4)]
            assert set(statuses) == {503}
            time.sleep(0.2)
            text = api.get("/metrics").text
    finally:
        proxies.close()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples, published


@pytest.fixture(scope="module")
def exported(traffic) -> dict[str, list[dict[str, str]]]:
    return {name: [labels for labels, _ in samples] for name, samples in traffic[0].items()}


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_every_series_the_alerts_and_dashboard_select_is_exported(exported, source: str) -> None:
    expressions = alert_expressions() if source == "alerts" else dashboard_expressions()
    missing = []
    for name, matchers in sorted(selectors(expressions)):
        def matches(labels: dict[str, str]) -> bool:
            for label, operator, value in matchers:
                got = labels.get(label, "")
                hit = re.fullmatch(value, got) is not None if "~" in operator else got == value
                if hit == operator.startswith("!"):
                    return False
            return True

        if not any(matches(labels) for labels in exported.get(name, [])):
            missing.append(f"{name}{{{', '.join(''.join(m) for m in matchers)}}}")
    assert missing == [], f"selected by the {source} but not exported: {missing}"


def test_the_served_calculation_is_exported_per_type_as_the_cluster_records_it(traffic, settings: Settings) -> None:
    from tests.integration.publishing import served, writer

    samples, published = traffic
    [index] = served(settings)
    assert index == published["index"]
    meta = writer(settings).segment_index(index).meta

    def value(name: str, **labels: str) -> float:
        [found] = [v for l, v in samples[name] if l == {"segment_type": "new_customers", **labels}]
        return found

    assert value("segmentation_served_generation") == meta["generation"] >= 1
    assert value("segmentation_served_memberships") == published["memberships"] == 30
    calculated = datetime.fromisoformat(meta["calculated_at"]).timestamp()
    assert value("segmentation_served_calculated_timestamp_seconds") == pytest.approx(calculated)
    assert time.time() - 600 < value("segmentation_served_published_timestamp_seconds") <= time.time()
    assert value("segmentation_type_indices", verified="true") == 1
    assert value("segmentation_type_indices", verified="false") == 0
    # The staleness alert's unit: a day, as the namespace's partitions are daily.
    assert settings.partition_granularity == "daily"
    assert {v for _, v in samples["segmentation_partition_period_seconds"]} == {24 * 3600}


def test_request_metrics_are_labelled_with_the_route_as_clients_call_it(exported) -> None:
    routes = {s["route"] for s in exported["segmentation_http_request_duration_seconds_count"]}
    assert "/v1/customers/{customer_id}/segments" in routes
    assert "/v1/segments" in routes and "/v1/segments/{segment_id}/stats" in routes
    assert not any("c001" in r or "down-" in r for r in routes)  # never the ids themselves
