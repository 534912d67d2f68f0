"""The lake on S3 and Spark mode `emr`, against moto's server, on the same code paths as production.

- `segmentation run` (a real subprocess, its own Spark JVM with the s3a connector) over a lake
  on S3: results and manifest land on S3, the lifecycle rule is set, lookups answer.
- Spark mode `emr`: the members asset submits the job to EMR Serverless through Dagster Pipes;
  moto stands for the service and tests/moto_emr.py for its workers.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

import boto3
import pytest
from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR, decode_param
from fastapi.testclient import TestClient

from api.main import create_app
from cli.runs import materialize_partition
from devtools.synthetic_lake import generate_lake
from resources.config_store.api_keys import ApiKeyRepository
from resources.config_store.database import session_factory
from resources.config_store.segments import SegmentRepository
from resources.lake.manifest import read_manifest
from resources.lake.retention import LIFECYCLE_RULE_ID
from resources.lake.storage import Lake
from resources.settings import Settings
from segmentation_assets import emr_runner
from segmentation_assets.core.segment_types import SEGMENT_TYPES
from tests.moto_emr import SPARK_SUBMIT_PARAMETERS_MAX, EmrStandIn, moto_server
from tests.reference import ReferenceLake

pytestmark = pytest.mark.integration

END = date(2026, 11, 25)
PARTITION = END.isoformat()
T = datetime(2026, 11, 26, tzinfo=timezone.utc)
LAKE_ARGS = {"customers": 1_500, "days": 40, "seed": 11, "end": END}
SEGMENTS = [
    ("frequent_buyers", {"min_orders": 2, "lookback_days": 30}),
    ("frequent_buyers", {"min_orders": 1, "lookback_days": 7, "city": "Madrid"}),
    ("high_spenders", {"min_total_amount": 80, "lookback_days": 30}),
]
# Past the ~2,500 segments of a type whose request fitted in the Pipes context (sparkSubmitParameters):
# each narrowed to a store, all different, none selecting anyone (1,000+ orders), so the reference
# need not compute them one by one (~20 ms each).
MANY_SEGMENTS = [
    ("frequent_buyers", {"min_orders": 1_000 + i // 20, "lookback_days": 30, "store_id": f"s{1 + i % 20:04d}"})
    for i in range(4_000)
]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(autouse=True)
def aws_environment(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def local_copy(tmp_path_factory: pytest.TempPathFactory) -> ReferenceLake:
    """The generator is deterministic: the same lake, written locally, for the reference."""
    root = tmp_path_factory.mktemp("local-copy")
    generate_lake(str(root), **LAKE_ARGS)
    return ReferenceLake(root)


def _s3_settings(settings: Settings, name: str) -> Settings:
    boto3.client("s3").create_bucket(Bucket=name)
    uri = f"s3://{name}/lake"
    generate_lake(uri, **LAKE_ARGS)
    return settings.model_copy(update={"lake_uri": uri})


def _create_segments(settings: Settings, wanted: list[tuple[str, dict]] = SEGMENTS) -> dict[str, tuple[str, dict]]:
    segments = SegmentRepository(session_factory(settings.database_url))
    created = {}
    for segment_type, params in wanted:
        parsed = SEGMENT_TYPES[segment_type].parse_params(params)
        segment = segments.create(
            name=f"{segment_type} {params}", segment_type=segment_type, params=params, targeting=parsed.targeting(),
            labels={}, description=None, status="active", actor="test",
        )
        created[segment.id] = (segment_type, params)
    return created


def _assert_served_as_reference(settings: Settings, created: dict, reference: ReferenceLake) -> None:
    expected: dict[str, set[str]] = {}
    for segment_id, (segment_type, params) in created.items():
        for customer_id in reference.members(segment_type, T, params):
            expected.setdefault(customer_id, set()).add(segment_id)
    assert expected, "the segments should select someone"
    read_key = ApiKeyRepository(session_factory(settings.database_url)).create(f"reader-{uuid.uuid4().hex[:8]}", "read")
    customers = sorted(expected)[:40] + ["c99999999"]
    with TestClient(create_app(settings)) as client:
        for customer_id in customers:
            body = client.get(f"/v1/customers/{customer_id}/segments", headers={"Authorization": f"Bearer {read_key}"}).json()
            assert [s["segment_id"] for s in body["segments"]] == sorted(expected.get(customer_id, set()))


@pytest.fixture
def namespace(make_namespace) -> Settings:
    """Each test its own: the members asset computes every active segment it finds."""
    return make_namespace()


def test_segmentation_run_over_a_lake_on_s3(namespace: Settings, local_copy: ReferenceLake) -> None:
    settings = _s3_settings(namespace, "lake-cli")
    created = _create_segments(settings)
    env = {
        **os.environ,
        "SEGMENTATION_LAKE_URI": settings.lake_uri,
        "SEGMENTATION_DATABASE_URL": settings.database_url,
        "SEGMENTATION_INDEX_PREFIX": settings.index_prefix,
        "SEGMENTATION_DAGSTER_HOME": str(settings.dagster_home),
    }
    completed = subprocess.run(
        [str(Path(sys.executable).parent / "segmentation"), "run", "--partition", PARTITION,
         "--segment-type", "frequent_buyers", "--segment-type", "high_spenders"],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]

    lake = Lake(settings.lake_uri)
    manifest = read_manifest(lake, lake.results_dir("frequent_buyers", PARTITION))
    assert {s.segment_id for s in manifest.segments} == {i for i, (t, _) in created.items() if t == "frequent_buyers"}
    rules = boto3.client("s3").get_bucket_lifecycle_configuration(Bucket="lake-cli")["Rules"]
    assert [r["Filter"]["Prefix"] for r in rules if r["ID"].startswith(LIFECYCLE_RULE_ID)] == ["lake/segments/"]
    _assert_served_as_reference(settings, created, local_copy)


def _pipes_extras(spark_submit_parameters: str) -> dict:
    """The extras of the Pipes context dagster-aws put into the job's driver environment."""
    conf = f"spark.emr-serverless.driverEnv.{DAGSTER_PIPES_CONTEXT_ENV_VAR}="
    value = next(w.removeprefix(conf) for w in shlex.split(spark_submit_parameters) if w.startswith(conf))
    return decode_param(value)["data"]["extras"]


def test_spark_mode_emr_through_pipes(
    namespace: Settings, local_copy: ReferenceLake, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also with more segments of a type than a request carried in the Pipes context allowed."""
    settings = _s3_settings(namespace, "lake-emr")
    created = {i: v for i, v in _create_segments(settings).items()}
    many = set(_create_segments(settings, MANY_SEGMENTS))
    application = boto3.client("emr-serverless").create_application(
        name="segmentation", releaseLabel="emr-7.5.0", type="SPARK"
    )
    stand_in = EmrStandIn(s3_endpoint)
    monkeypatch.setattr(emr_runner, "emr_serverless_client", lambda: stand_in)
    emr_settings = settings.model_copy(
        update={
            "spark_mode": "emr",
            "emr_application_id": application["applicationId"],
            "emr_execution_role_arn": "arn:aws:iam::123456789012:role/segmentation-emr",
            "emr_code_uri": "s3://lake-emr/_emr",
        }
    )
    outcome = materialize_partition(emr_settings, PARTITION, ["frequent_buyers", "high_spenders"])
    assert outcome.success, "\n".join(outcome.summary_lines)

    assert len(stand_in.started) == 2  # one job per segment type
    submitted = stand_in.started[0]["jobDriver"]["sparkSubmit"]
    assert submitted["entryPoint"] == "s3://lake-emr/_emr/emr_entrypoint.py"
    assert "--py-files s3://lake-emr/_emr/segmentation-" in submitted["sparkSubmitParameters"]
    _assert_served_as_reference(settings, created, local_copy)

    lake = Lake(settings.lake_uri)
    manifest = read_manifest(lake, lake.results_dir("frequent_buyers", PARTITION))
    frequent_buyers = {i for i, (t, _) in created.items() if t == "frequent_buyers"} | many
    assert {s.segment_id for s in manifest.segments} == frequent_buyers
    assert not [s for s in manifest.segments if s.segment_id in many and s.member_count]
    [job_run] = [r for r in stand_in.started if r["name"].startswith("segmentation-frequent_buyers-")]
    parameters = job_run["jobDriver"]["sparkSubmit"]["sparkSubmitParameters"]
    assert len(parameters) < SPARK_SUBMIT_PARAMETERS_MAX // 50, len(parameters)
    request_uri = _pipes_extras(parameters)["request_uri"]
    assert request_uri == f"s3://lake-emr/_emr/requests/{manifest.run_id}/frequent_buyers-{PARTITION}.json"
    request = boto3.client("s3").get_object(Bucket="lake-emr", Key=urlparse(request_uri).path.lstrip("/"))
    assert {c["segment_id"] for c in json.loads(request["Body"].read())["configs"]} == frequent_buyers
