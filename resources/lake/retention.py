"""Old calculation results leave the lake after a retention period.

On S3 a bucket lifecycle rule expires them, so nothing has to run; on a local lake the
calculation asset removes the folders past the period after each run.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlparse

from resources.lake.storage import MANIFEST_NAME, Lake

LIFECYCLE_RULE_ID = "segmentation-results-retention"


def results_prefix(lake: Lake) -> tuple[str, str]:
    """(bucket, key prefix of every results folder) of a lake on S3."""
    parsed = urlparse(lake.uri.replace("s3a://", "s3://", 1))
    prefix = "/".join(p for p in (parsed.path.strip("/"), "segments") if p) + "/"
    return parsed.netloc, prefix


def ensure_lifecycle_rule(lake: Lake, retention_days: int, s3_client) -> dict:
    """Adds or updates our expiration rule, keeping every other rule of the bucket."""
    bucket, prefix = results_prefix(lake)
    try:
        rules = s3_client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    except s3_client.exceptions.ClientError as error:
        if error.response["Error"]["Code"] != "NoSuchLifecycleConfiguration":
            raise
        rules = []
    rule = {
        "ID": f"{LIFECYCLE_RULE_ID}:{prefix}",
        "Filter": {"Prefix": prefix},
        "Status": "Enabled",
        "Expiration": {"Days": retention_days},
    }
    others = [r for r in rules if r.get("ID") != rule["ID"]]
    s3_client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [*others, rule]})
    return rule


def remove_expired_results(lake: Lake, segment_type: str, retention_days: int, now: datetime) -> list[str]:
    """Deletes the type's local result folders written more than the period ago.

    Age is the time the folder was written, as an S3 lifecycle rule counts it, so a backfill of
    old partitions is not removed by the run that computed it.
    """
    oldest_kept = (now - timedelta(days=retention_days)).timestamp()
    type_dir = lake.segment_type_dir(segment_type)
    removed = []
    for folder in lake.child_folders(type_dir):
        written = lake.modified_at(f"{type_dir}/{folder}/{MANIFEST_NAME}") or lake.modified_at(f"{type_dir}/{folder}")
        if written is not None and written < oldest_kept:
            lake.delete_folder(f"{type_dir}/{folder}")
            removed.append(folder)
    return removed
