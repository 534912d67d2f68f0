"""The process-wide SparkSession of local mode: one JVM per process, shared by every step and test.

A lake on S3 is read through the s3a connector: hadoop-aws matching the Hadoop that PySpark
ships (3.4.1) and the few AWS SDK v2 modules it needs, resolved from Maven Central by Spark
itself and cached (~10 MB), rather than the 550 MB SDK bundle that hadoop-aws declares.
"""

from __future__ import annotations

import os
import threading

from pyspark.sql import SparkSession

_lock = threading.Lock()

S3A_PACKAGES = (
    "org.apache.hadoop:hadoop-aws:3.4.1",
    "software.amazon.awssdk:s3:2.24.8",
    "software.amazon.awssdk:s3-transfer-manager:2.24.8",
)
# Spark brings its own (newer) Netty and SLF4J; the bundle is replaced by the modules above.
S3A_EXCLUDES = (
    "software.amazon.awssdk:bundle",
    "org.slf4j:slf4j-api",
    *(
        f"io.netty:netty-{name}"
        for name in (
            "buffer", "codec", "codec-http", "codec-http2", "common", "handler", "resolver",
            "transport", "transport-classes-epoll", "transport-native-unix-common",
        )
    ),
)


def s3a_settings(endpoint_url: str | None) -> dict[str, str]:
    settings = {
        "spark.jars.packages": ",".join(S3A_PACKAGES),
        "spark.jars.excludes": ",".join(S3A_EXCLUDES),
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        # Spark writes through a temporary folder and renames; on S3 that is a copy, so commit
        # task output directly with the v2 algorithm.
        "spark.hadoop.mapreduce.fileoutputcommitter.algorithm.version": "2",
    }
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        settings["spark.hadoop.fs.s3a.endpoint.region"] = region
    if endpoint_url:  # an S3-compatible server (moto in tests, MinIO...): path-style addressing
        settings["spark.hadoop.fs.s3a.endpoint"] = endpoint_url
        settings["spark.hadoop.fs.s3a.path.style.access"] = "true"
        settings["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(endpoint_url.startswith("https")).lower()
    return settings


# What every session that runs a segment job needs, here and on EMR: windows in UTC, and
# Parquet timestamps in nanoseconds (pandas writes them), which Spark refuses, read as longs that
# `segmentation_assets.core.raw_data` turns into microseconds.
JOB_SQL_SETTINGS = {"spark.sql.session.timeZone": "UTC", "spark.sql.legacy.parquet.nanosAsLong": "true"}


def local_spark_config(
    *,
    master: str = "local[*]",
    driver_memory: str = "2g",
    shuffle_partitions: int = 8,
    lake_uri: str = "",
) -> dict[str, str]:
    """Every setting of a local session; the s3a connector's only for a lake on S3."""
    config = {
        "spark.master": master,
        "spark.app.name": "segmentation",
        "spark.driver.memory": driver_memory,
        "spark.sql.shuffle.partitions": str(shuffle_partitions),
        "spark.sql.adaptive.enabled": "true",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.log.level": "ERROR",
        **JOB_SQL_SETTINGS,
    }
    if lake_uri.startswith(("s3://", "s3a://")):
        config |= s3a_settings(os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"))
    return config


def local_spark_session(
    *,
    master: str = "local[*]",
    driver_memory: str = "2g",
    shuffle_partitions: int = 8,
    lake_uri: str = "",
) -> SparkSession:
    """The process's session, made with `local_spark_config` if there is none yet (else as it is)."""
    with _lock:
        active = SparkSession.getActiveSession()
        if active is not None:
            return active
        config = local_spark_config(
            master=master, driver_memory=driver_memory, shuffle_partitions=shuffle_partitions, lake_uri=lake_uri
        )
        return SparkSession.builder.config(map=config).getOrCreate()
