"""What every asset of a segment type carries: its owner, its tags, and how its steps retry.

Every step reaches a network service (the lake, EMR, PostgreSQL, Elasticsearch, Redis), so each
retries a failure that may pass: a lost connection, a lock another run holds. A failure that a
retry would only repeat (results that cannot be read, a refused publication) says so with
`dg.Failure(allow_retries=False)` and fails at once.
"""

from __future__ import annotations

import dagster as dg

OWNERS = ["team:segmentation"]


def asset_tags(segment_type: str, stage: str) -> dict[str, str]:
    """`stage` is the asset's place in a calculation's way to readers: calculation, index, alias."""
    return {"segment_type": segment_type, "stage": stage}


def step_retry_policy(max_retries: int, delay_seconds: float) -> dg.RetryPolicy | None:
    if max_retries == 0:
        return None
    return dg.RetryPolicy(
        max_retries=max_retries, delay=delay_seconds, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
    )


# The tag of preview runs, which the instance's run queue lets run one at a time (instance.py).
RUN_KIND_TAG = "segmentation/run"
PREVIEW_RUN_KIND = "preview"
