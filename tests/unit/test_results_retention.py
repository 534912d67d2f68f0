"""Old calculation results leave a local lake; on S3 a lifecycle rule does it (tested with moto)."""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path

import boto3
from moto import mock_aws

from resources.lake.storage import MANIFEST_NAME, Lake
from resources.lake.retention import LIFECYCLE_RULE_ID, ensure_lifecycle_rule, remove_expired_results

DAY = 86_400


def _results(root: Path, segment_type: str, partition: str, age_days: float) -> Path:
    folder = root / "segments" / segment_type / partition
    folder.mkdir(parents=True)
    manifest = folder / MANIFEST_NAME
    manifest.write_text("{}")
    written = time.time() - age_days * DAY
    os.utime(manifest, (written, written))
    os.utime(folder, (written, written))
    return folder


def test_local_results_older_than_the_period_are_removed(tmp_path: Path) -> None:
    old = _results(tmp_path, "frequent_buyers", "2026-09-01", age_days=31)
    kept = _results(tmp_path, "frequent_buyers", "2026-10-30", age_days=29)
    # A backfill of an old partition, written today, stays: age is when it was written.
    backfilled = _results(tmp_path, "frequent_buyers", "2025-01-01", age_days=0)
    other_type = _results(tmp_path, "high_spenders", "2026-09-01", age_days=31)

    removed = remove_expired_results(Lake(str(tmp_path)), "frequent_buyers", 30, datetime.now(timezone.utc))

    assert removed == ["2026-09-01"]
    assert not old.exists() and kept.exists() and backfilled.exists() and other_type.exists()


@mock_aws
def test_s3_lifecycle_rule_is_added_once_and_other_rules_kept() -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="lake")
    other = {"ID": "logs", "Filter": {"Prefix": "logs/"}, "Status": "Enabled", "Expiration": {"Days": 7}}
    s3.put_bucket_lifecycle_configuration(Bucket="lake", LifecycleConfiguration={"Rules": [other]})
    lake = Lake("s3://lake/prod")

    ensure_lifecycle_rule(lake, 30, s3)
    ensure_lifecycle_rule(lake, 14, s3)  # a changed period replaces our rule, not adds one

    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket="lake")["Rules"]}
    ours = [r for i, r in rules.items() if i.startswith(LIFECYCLE_RULE_ID)]
    assert "logs" in rules
    assert len(ours) == 1
    assert ours[0]["Filter"]["Prefix"] == "prod/segments/" and ours[0]["Expiration"]["Days"] == 14
