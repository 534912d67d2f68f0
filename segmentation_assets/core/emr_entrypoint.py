"""The segment job as EMR Serverless runs it: the same `run_segment_job`, driven by Dagster Pipes.

EMR runs this file with `spark-submit`; the project's packages arrive through `--py-files`
(see segmentation_assets/emr_runner.py). The request is read from S3, at the URI the Pipes extra
`request_uri` gives; progress and the outcome go back through S3 messages, and the results and
manifest go to the lake as in local mode.
"""

from __future__ import annotations

import json
from urllib.parse import urlparse


def main() -> None:
    import boto3
    from dagster_pipes import PipesS3MessageWriter, open_dagster_pipes
    from pyspark.sql import SparkSession

    from segmentation_assets.core.segment_job import SegmentJobRequest, run_segment_job
    from segmentation_assets.core.spark_session import JOB_SQL_SETTINGS

    s3 = boto3.client("s3")
    with open_dagster_pipes(message_writer=PipesS3MessageWriter(client=s3)) as pipes:
        if "request_uri" in pipes.extras:
            request_uri = urlparse(pipes.get_extra("request_uri"))
            body = s3.get_object(Bucket=request_uri.netloc, Key=request_uri.path.lstrip("/"))["Body"].read()
            request = SegmentJobRequest.from_json(json.loads(body))
        else:  # a run the release before submitted, with the request inline, meeting this entry point
            request = SegmentJobRequest.from_json(pipes.get_extra("request"))
        spark = (
            SparkSession.builder.appName(f"segmentation-{request.segment_type}-{request.partition_key}")
            .config(map=JOB_SQL_SETTINGS)
            .getOrCreate()
        )
        result = run_segment_job(spark, request)
        pipes.log.info(
            f"{len(result.segments)} {request.segment_type} segments, {result.total_members} memberships "
            f"in {result.seconds}s"
        )


if __name__ == "__main__":
    main()
