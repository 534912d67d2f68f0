"""Segment config management below the routes: checks, the config store's calls through its guard,
and the store's outcomes as the API's errors. Routes parse, call one method, and set headers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends

from api.config.input import (
    decode_cursor,
    encode_cursor,
    etag,
    known_segment_type,
    label_filters,
    require_storable,
    validated_params,
)
from api.config.schemas import (
    SegmentCreate,
    SegmentListQuery,
    SegmentPublic,
    SegmentUpdate,
)
from api.errors import Conflict, NotFound, PreconditionFailed, invalid_field
from api.state import AppState, State
from resources.config_store.api_keys import ApiKey
from resources.config_store.segments import (
    AuditEntry,
    SegmentArchived,
    SegmentFilters,
    SegmentNotFound,
    SegmentStatus,
    StaleVersion,
)
from resources.targeting import given_attributes
from segmentation_assets.core.segment_types import SEGMENT_TYPES

# Listing without a status filter leaves archived segments out; ask for them by name.
LISTED_BY_DEFAULT: tuple[SegmentStatus, ...] = ("active", "paused")


class SegmentConfigs:
    def __init__(self, state: AppState) -> None:
        self._state = state

    async def _run(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        return await self._state.config_store.run(call, *args, **kwargs)

    @staticmethod
    def segment_types() -> list[dict[str, Any]]:
        return [
            {"name": t.name, "description": t.description, "params_schema": t.json_schema()}
            for t in SEGMENT_TYPES.values()
        ]

    async def create(self, body: SegmentCreate, key: ApiKey) -> SegmentPublic:
        params, targeting = validated_params(body.segment_type, body.params)
        require_storable(name=body.name, description=body.description, labels=body.labels)
        return await self._run(
            self._state.segments.create,
            name=body.name,
            segment_type=body.segment_type,
            params=params,
            targeting=targeting,
            labels=body.labels,
            description=body.description,
            status=body.status,
            actor=key.name,
        )

    async def page(self, query: SegmentListQuery) -> dict[str, Any]:
        filters = SegmentFilters(
            segment_type=known_segment_type(query.segment_type) if query.segment_type is not None else None,
            statuses=tuple(dict.fromkeys(query.status)) or LISTED_BY_DEFAULT,
            attributes=given_attributes(query),
            labels=label_filters(query.label),
        )
        segments, more = await self._run(
            self._state.segments.list, filters, after_id=decode_cursor(query.cursor), limit=query.limit
        )
        return {"segments": segments, "next_cursor": encode_cursor(segments[-1].id) if more else None}

    async def get(self, segment_id: str) -> SegmentPublic:
        try:
            return await self._run(self._state.segments.get, segment_id)
        except SegmentNotFound as error:
            raise NotFound(f"no segment {segment_id!r}") from error

    async def update(self, segment_id: str, body: SegmentUpdate, version: int, key: ApiKey) -> SegmentPublic:
        current = await self.get(segment_id)
        # Preconditions before the content: a stale or archived segment is reported as such.
        _check_writable(current, version)
        if body.segment_type is not None and body.segment_type != current.segment_type:
            raise invalid_field("segment_type", f"cannot change (it is {current.segment_type!r}); create a new segment")
        changes = body.model_dump(exclude_unset=True, exclude={"segment_type"})
        require_storable(**{k: v for k, v in changes.items() if k != "params"})
        if "params" in changes:
            changes["params"], targeting = validated_params(current.segment_type, changes["params"])
            changes.update(targeting)
        try:
            return await self._run(
                self._state.segments.update, segment_id, expected_version=version, changes=changes, actor=key.name
            )
        except (SegmentArchived, StaleVersion) as error:  # a concurrent writer won the compare-and-set
            _check_writable(error.current, version)
            raise _changed_concurrently(segment_id) from error

    async def archive(self, segment_id: str, version: int | None, key: ApiKey) -> None:
        try:
            segment = await self._run(self._state.segments.archive, segment_id, actor=key.name, expected_version=version)
        except SegmentNotFound as error:
            raise NotFound(f"no segment {segment_id!r}") from error
        except StaleVersion as error:
            # Not `_check_writable`: archiving an archived segment is no conflict, but a stale version is.
            _check_version(error.current, version)
            raise _changed_concurrently(segment_id) from error
        # This process at once; the others within their refresh of archived ids (api/lifespan.py).
        self._state.archived_segment_ids = self._state.archived_segment_ids | {segment.id}

    async def audit(self, segment_id: str) -> list[AuditEntry]:
        try:
            return await self._run(self._state.segments.audit, segment_id)
        except SegmentNotFound as error:
            raise NotFound(f"no segment {segment_id!r}") from error


def _check_writable(current: SegmentPublic, expected: int | None) -> None:
    if current.status == "archived":
        raise Conflict(
            f"segment {current.id!r} is archived; archived segments cannot be changed",
            details={"current_version": current.version},
        )
    _check_version(current, expected)


def _check_version(current: SegmentPublic, expected: int | None) -> None:
    if expected is not None and current.version != expected:
        raise PreconditionFailed(
            f"segment {current.id!r} is at version {current.version}, not {expected}: read it again and retry",
            details={"current_version": current.version},
            headers={"ETag": etag(current.version)},
        )


def _changed_concurrently(segment_id: str) -> Conflict:
    return Conflict(f"segment {segment_id!r} kept changing while this request ran; retry")


async def segment_configs(state: State) -> SegmentConfigs:
    return SegmentConfigs(state)


Configs = Annotated[SegmentConfigs, Depends(segment_configs)]
