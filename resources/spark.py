"""The process-wide SparkSession of local mode: one JVM per process, shared by every step and test."""

from __future__ import annotations

import threading

from pyspark.sql import SparkSession

_lock = threading.Lock()


def local_spark_session(*, master: str = "local[*]", driver_memory: str = "2g", shuffle_partitions: int = 8) -> SparkSession:
    with _lock:
        active = SparkSession.getActiveSession()
        if active is not None:
            return active
        return (
            SparkSession.builder.master(master)
            .appName("segmentation")
            .config("spark.driver.memory", driver_memory)
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
            .config("spark.sql.adaptive.enabled", "true")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.sources.partitionOverwriteMode", "static")
            .getOrCreate()
        )
