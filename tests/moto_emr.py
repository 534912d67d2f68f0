"""moto's server, and a stand-in for EMR Serverless's workers.

moto accepts a job run and marks it SUCCESS at once without running anything. The stand-in
does what EMR would do with the submitted job, before moto answers: it fetches the submitted
entry point and `--py-files` archive from (moto's) S3, turns the `driverEnv` confs into the
driver's environment, and runs them with the local `spark-submit`. Everything on the Dagster
side (upload, submission, Pipes messages through S3, reading the manifest) is production code.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import boto3
from botocore.exceptions import ClientError

from segmentation_assets.core.spark_session import s3a_settings

VENV_BIN = Path(sys.executable).parent
# EMR Serverless's StartJobRun API reference, SparkSubmit.sparkSubmitParameters: "Maximum length of
# 102400" (also `max` in botocore's emr-serverless service model). Neither botocore nor moto enforces it.
SPARK_SUBMIT_PARAMETERS_MAX = 102_400


@contextmanager
def moto_server() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("moto_server did not start")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def _download(s3, uri: str, folder: Path) -> Path:
    parsed = urlparse(uri)
    target = folder / Path(parsed.path).name
    s3.download_file(parsed.netloc, parsed.path.lstrip("/"), str(target))
    return target


def run_like_emr(job_run: dict, endpoint_url: str) -> None:
    spark_submit = job_run["jobDriver"]["sparkSubmit"]
    words = shlex.split(spark_submit.get("sparkSubmitParameters", ""))
    env = dict(os.environ)
    confs: list[str] = []
    py_files = None
    i = 0
    while i < len(words):
        if words[i] == "--py-files":
            py_files, i = words[i + 1], i + 2
        elif words[i] == "--conf":
            key, _, value = words[i + 1].partition("=")
            if key.startswith("spark.emr-serverless.driverEnv."):
                env[key.removeprefix("spark.emr-serverless.driverEnv.")] = value
            else:
                confs += ["--conf", f"{key}={value}"]
            i += 2
        else:
            i += 1
    s3 = boto3.client("s3", endpoint_url=endpoint_url)
    with tempfile.TemporaryDirectory() as folder:
        entry_point = _download(s3, spark_submit["entryPoint"], Path(folder))
        archive = _download(s3, py_files, Path(folder)) if py_files else None
        for key, value in s3a_settings(endpoint_url).items():
            confs += ["--conf", f"{key}={value}"]
        command = [str(VENV_BIN / "spark-submit"), "--master", "local[2]", *confs]
        if archive:
            command += ["--py-files", str(archive)]
        env["PYSPARK_PYTHON"] = sys.executable
        env.pop("PYTHONPATH", None)  # the job must import the project from the shipped archive
        completed = subprocess.run([*command, str(entry_point)], env=env, capture_output=True, text=True, cwd=folder)
        if completed.returncode != 0:
            raise RuntimeError(f"the EMR stand-in's spark-submit failed:\n{completed.stderr[-4000:]}")


class EmrStandIn:
    """An EMR Serverless client: moto's, plus a worker that runs each job as it is submitted."""

    def __init__(self, endpoint_url: str) -> None:
        self._client = boto3.client("emr-serverless", endpoint_url=endpoint_url)
        self._endpoint_url = endpoint_url
        self.started: list[dict] = []

    def start_job_run(self, **params):
        parameters = params["jobDriver"]["sparkSubmit"].get("sparkSubmitParameters", "")
        if len(parameters) > SPARK_SUBMIT_PARAMETERS_MAX:
            message = (
                "1 validation error detected: Value at 'jobDriver.sparkSubmit.sparkSubmitParameters' failed to "
                f"satisfy constraint: Member must have length less than or equal to {SPARK_SUBMIT_PARAMETERS_MAX}"
            )
            raise ClientError({"Error": {"Code": "ValidationException", "Message": message}}, "StartJobRun")
        response = self._client.start_job_run(**params)
        job_run = self._client.get_job_run(applicationId=response["applicationId"], jobRunId=response["jobRunId"])["jobRun"]
        self.started.append(job_run)
        run_like_emr(job_run, self._endpoint_url)
        return response

    def __getattr__(self, name: str):
        return getattr(self._client, name)
