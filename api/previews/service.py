"""Previews below the routes: the request checked as a segment's create would be, the partition
chosen or checked, the preview queued in the config store; and its state read back.

The API process only records a preview; a Dagster run computes it (segmentation_assets/previews.py).
`Previews` is shared by the routes and the console: both call `request` and `get`.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import Depends

from api.config.input import known_segment_type, validated_params
from api.errors import NotFound, TooManyRequests, invalid_field
from api.previews.schemas import PreviewPublic
from api.state import AppState, State
from resources.config_store.api_keys import ApiKey
from resources.config_store.previews import Preview, PreviewNotFound
from resources.names import ID_PATTERN
from resources.partition_keys import InvalidPartition, checked_partition, latest_closed_partition

# Previews queued or running at once, all keys together: past this, a request is refused (429)
# rather than queued behind hours of work.
MAX_UNFINISHED = 200
RETRY_AFTER_SECONDS = 30


def preview_body(preview: Preview) -> dict[str, Any]:
    """What `GET /v1/previews/{preview_id}` answers."""
    return PreviewPublic(
        preview_id=preview.id,
        status=preview.status,
        segment_type=preview.segment_type,
        params=preview.params,
        partition=preview.partition_key,
        member_count=preview.member_count,
        sample_customer_ids=preview.sample_customer_ids,
        error=preview.error,
        requested_at=preview.requested_at,
        finished_at=preview.finished_at,
    ).model_dump()


class Previews:
    def __init__(self, state: AppState) -> None:
        self._state = state

    async def _run(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        return await self._state.config_store.run(call, *args, **kwargs)

    def _partition(self, partition: str | None) -> str:
        """The partition asked for, if it exists and has closed; else the latest closed one."""
        settings = self._state.settings
        now = datetime.now(timezone.utc)
        if partition is None:
            latest = latest_closed_partition(settings.partition_granularity, settings.partitions_start_date, now)
            if latest is None:
                raise invalid_field("partition", f"no partition has closed yet (they start on {settings.partitions_start_date})")
            return latest
        try:
            return checked_partition(settings.partition_granularity, settings.partitions_start_date, partition, now)
        except InvalidPartition as error:
            raise invalid_field("partition", str(error)) from error

    async def request(self, segment_type: str, params: dict[str, Any], partition: str | None, key: ApiKey) -> dict[str, Any]:
        """Queues a preview; its body as `get` answers it (status `queued`). 422 naming the field
        for an unknown type, params the type refuses, or a partition that is not a closed one."""
        stored, _ = validated_params(known_segment_type(segment_type), params)
        partition_key = self._partition(partition)
        if await self._run(self._state.previews.unfinished_count) >= MAX_UNFINISHED:
            raise TooManyRequests(
                f"{MAX_UNFINISHED} previews are already waiting or running; try again shortly",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        preview = await self._run(
            self._state.previews.create,
            segment_type=segment_type,
            params=stored,
            partition_key=partition_key,
            requested_by=key.name,
        )
        return preview_body(preview)

    async def get(self, preview_id: str) -> dict[str, Any]:
        if not re.fullmatch(ID_PATTERN, preview_id):
            raise NotFound(f"no preview {preview_id!r}")
        try:
            return preview_body(await self._run(self._state.previews.get, preview_id))
        except PreviewNotFound as error:
            raise NotFound(f"no preview {preview_id!r}") from error


async def previews_service(state: State) -> Previews:
    return Previews(state)


PreviewsService = Annotated[Previews, Depends(previews_service)]
