"""Spark mode `emr`: the segment job runs on EMR Serverless through Dagster Pipes.

EMR Serverless rather than EMR on EC2 (`PipesEMRClient`): a job run is one API call against
an application that scales to zero between runs, with no cluster to keep or size for a daily
job that lasts minutes; and its job runs reach a final state by themselves, so the same code
path is testable against moto's server.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import boto3
import dagster as dg
from dagster_aws.pipes import PipesEMRServerlessClient, PipesS3MessageReader

from resources.lake.manifest import read_manifest
from resources.lake.storage import Lake
from segmentation_assets.core.segment_job import SegmentJobRequest, SegmentJobResult
from segmentation_assets.dagster_resources import SegmentJobRunner

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_PACKAGES = ("resources", "segmentation_assets")
ENTRYPOINT = PROJECT_ROOT / "segmentation_assets" / "core" / "emr_entrypoint.py"


def project_archive() -> bytes:
    """The packages the job imports, zipped for `--py-files`; deterministic, so its hash names it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for package in SHIPPED_PACKAGES:
            for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
                info = zipfile.ZipInfo(str(path.relative_to(PROJECT_ROOT)), date_time=(2020, 1, 1, 0, 0, 0))
                archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def _split(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.strip("/")


def emr_serverless_client():
    return boto3.client("emr-serverless")


class EmrServerlessRunner(SegmentJobRunner):
    """Submits the segment job to an EMR Serverless application and waits for it."""

    application_id: str
    execution_role_arn: str
    # Where the entry point, the project archive, the job requests and the Pipes messages go:
    # s3://bucket/prefix
    code_uri: str
    spark_submit_parameters: str = "--conf spark.sql.session.timeZone=UTC"
    poll_interval_seconds: float = 10.0

    def upload_code(self, s3) -> tuple[str, str]:
        bucket, prefix = _split(self.code_uri)
        archive = project_archive()
        archive_key = f"{prefix}/segmentation-{hashlib.sha256(archive).hexdigest()[:16]}.zip"
        entry_key = f"{prefix}/emr_entrypoint.py"
        s3.put_object(Bucket=bucket, Key=archive_key, Body=archive)
        s3.put_object(Bucket=bucket, Key=entry_key, Body=ENTRYPOINT.read_bytes())
        return f"s3://{bucket}/{entry_key}", f"s3://{bucket}/{archive_key}"

    def upload_request(self, s3, request: SegmentJobRequest) -> str:
        """The request goes by S3, not in the Pipes context: dagster-aws puts that context into
        `sparkSubmitParameters`, which EMR caps at 102,400 characters (~2,500 segments). One object
        per job of a run; a retry of the step rewrites it before its own job starts."""
        bucket, prefix = _split(self.code_uri)
        key = f"{prefix}/requests/{request.run_id}/{request.segment_type}-{request.partition_key}.json"
        s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(request.to_json()).encode())
        return f"s3://{bucket}/{key}"

    def run(self, context: dg.AssetExecutionContext, request: SegmentJobRequest) -> SegmentJobResult:
        s3 = boto3.client("s3")
        entry_point, archive = self.upload_code(s3)
        request_uri = self.upload_request(s3, request)
        bucket, _ = _split(self.code_uri)
        pipes = PipesEMRServerlessClient(
            client=emr_serverless_client(),
            message_reader=PipesS3MessageReader(bucket=bucket, client=s3, interval=self.poll_interval_seconds),
            poll_interval=self.poll_interval_seconds,
        )
        pipes.run(
            context=context,
            start_job_run_params={
                "applicationId": self.application_id,
                "executionRoleArn": self.execution_role_arn,
                "name": f"segmentation-{request.segment_type}-{request.partition_key}",
                "jobDriver": {
                    "sparkSubmit": {
                        "entryPoint": entry_point,
                        "sparkSubmitParameters": f"--py-files {archive} {self.spark_submit_parameters}",
                    }
                },
            },
            extras={"request_uri": request_uri},
        )
        lake = Lake(request.lake_uri)
        results_uri = lake.results_dir(request.segment_type, request.partition_key)
        manifest = read_manifest(lake, results_uri)
        if manifest.run_id != request.run_id:
            raise dg.Failure(
                f"EMR job finished but {results_uri} holds the manifest of run {manifest.run_id}, "
                f"not of this run {request.run_id}: the job did not write its results"
            )
        return SegmentJobResult(results_uri, manifest)
