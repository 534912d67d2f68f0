"""Which index serves a segment type: the alias switch, its generation, retention and rollback.

Every move of the aliases is one atomic `_aliases` request (`SegmentIndexWriter.switch_alias`),
followed by a new generation: the Redis counter `<prefix>:{served}:generation`, and in the same
script the type's entry in `<prefix>:{served}` (its index, and this generation; one hash tag, so one
slot on a Redis Cluster), which the API's cache keys
on: an answer cached from a type's index stays valid until that type switches, whatever the
others do. The generation is also written into the served index's `_meta`, and the counter never
goes below the highest generation recorded there, so a Redis that lost its data cannot hand out a
generation again.

Nothing moves unless Redis answers first; a switch that Redis then cannot give a generation is
undone, so the failed publish leaves the previous calculation served, and publishing
again switches anew. An index served without a generation (the undo failed too) is given one when
it is published again. Once the aliases have moved and the generation is given, the publish has
happened: what fails after that (recording the generation in `_meta`, retention) is reported in
`AliasMove.problems`, not as a failed publish.

Callers hold the type's `IngestionLock` around all of this.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import NoReturn

import redis
from elastic_transport import TransportError
from elasticsearch import ApiError
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from resources.names import generation_key, is_index_name, served_indices_key
from resources.publishing.index_writer import SegmentIndex, SegmentIndexWriter
from resources.publishing.lock import IngestionLock, IngestionLocked
from resources.redis_clients import REDIS_ERRORS, SyncRedis

# INCR the counter KEYS[1], but never to a value at or below ARGV[1] (the highest generation
# Elasticsearch has seen); then record in the hash KEYS[2] that type ARGV[2] is served by index
# ARGV[3] since that generation (no index: the type is served by none). Answers the generation.
_RECORD_SWITCH = """
local generation = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[1])
if generation <= floor then
  generation = floor + 1
  redis.call('SET', KEYS[1], generation)
end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[2], ARGV[2])
else
  redis.call('HSET', KEYS[2], ARGV[2], generation .. ' ' .. ARGV[3])
end
return generation
"""


# A new generation is asked for this many times, backing off, before a switch is undone: a Redis
# failover takes seconds. Only a lost connection is worth asking again.
GENERATION_ATTEMPTS = 3


class PublicationRefused(RuntimeError):
    pass


@dataclass(frozen=True)
class AliasMove:
    served: str  # what serves the type afterwards
    previous: list[str]
    generation: int | None  # None when the aliases did not move
    kept_newer: bool = False  # the requested index is older than the served one, which stays
    deleted: list[str] = field(default_factory=list)
    compaction: str | None = None  # the merge task started on the newly served index, or why none
    problems: list[str] = field(default_factory=list)  # what failed after the switch, which stands


def move_under_lock(lock: IngestionLock, move_aliases: Callable[[], AliasMove]) -> AliasMove:
    """An alias move made holding the type's lock. A lock found lost on leaving does not undo a
    move that happened: it is reported with it (`problems`); before any move, it fails the caller."""
    move = None
    try:
        with lock.held():
            move = move_aliases()
    except IngestionLocked as error:
        if move is None:
            raise
        return replace(move, problems=[*move.problems, str(error)])
    return move


def record_switch(client: SyncRedis, prefix: str, segment_type: str, index: str | None, floor: int) -> int:
    """A new generation, now the one `index` serves `segment_type` under (`served_index_value`)."""
    keys = [generation_key(prefix), served_indices_key(prefix)]
    return int(client.register_script(_RECORD_SWITCH)(keys=keys, args=[floor, segment_type, index or ""]))


def _new_generation(client: SyncRedis, prefix: str, segment_type: str, index: str, floor: int) -> int:
    retrying = Retrying(
        stop=stop_after_attempt(GENERATION_ATTEMPTS),
        wait=wait_exponential(multiplier=0.5, max=2),
        retry=retry_if_exception_type((redis.ConnectionError, redis.TimeoutError)),
        reraise=True,
    )
    return retrying(record_switch, client, prefix, segment_type, index, floor)


def _switch(
    writer: SegmentIndexWriter, client: SyncRedis, segment_type: str, index: str
) -> tuple[list[str], int, list[str]]:
    """(what was served before, the new generation, what failed after the switch)."""
    floor = writer.highest_served_generation()
    try:
        client.ping()  # before anything moves: a switch that Redis cannot number has to be undone
    except REDIS_ERRORS as error:
        raise PublicationRefused(
            f"Redis does not answer ({error}): the aliases of {segment_type} did not move. Publish again once it does."
        ) from error
    previous = writer.switch_alias(segment_type, index)
    try:
        generation = _new_generation(client, writer.prefix, segment_type, index, floor)
    except REDIS_ERRORS as error:
        # Readers key their caches on the type's generation: under the old one, answers cached from
        # the previous index would still be served for the new one's. So the switch is undone.
        _undo_switch(writer, client, segment_type, index, previous, floor, error)
    try:
        writer.update_meta(index, generation=generation, published_at=datetime.now(timezone.utc).isoformat())
    except (ApiError, TransportError) as error:
        unrecorded = f"{index} is served, but its _meta lacks generation {generation} ({error}); publishing it again records one"
        return previous, generation, [unrecorded]
    return previous, generation, []


def _undo_switch(
    writer: SegmentIndexWriter,
    client: SyncRedis,
    segment_type: str,
    index: str,
    previous: list[str],
    floor: int,
    error: Exception,
) -> NoReturn:
    why = f"Redis could not give the switch of {segment_type} to {index} a new generation ({error})"
    if index in previous:  # served already, never given a generation: there is nothing to go back to
        raise PublicationRefused(
            f"{why}: it stays served under the previous generation. Publish it again once Redis answers."
        ) from error
    try:
        writer.undo_switch(segment_type, index, previous)
    except (ApiError, TransportError) as undo_error:
        raise PublicationRefused(
            f"{why}, and moving the aliases back failed too ({undo_error}): {index} is served under the previous "
            "generation, and answers cached before the switch may be served until API processes correct Redis's "
            "record of it (within 15 s of Redis answering). Once Redis answers, publish it again."
        ) from error
    try:
        # While the generation was asked for, readers may have cached the new index's answers under
        # the current one: a new generation retires them.
        record_switch(client, writer.prefix, segment_type, previous[0] if previous else None, floor)
        retired = ""
    except REDIS_ERRORS:
        retired = (
            f" Answers that readers cached from {index} in the meantime may be served until they expire "
            "(SEGMENTATION_LOOKUP_CACHE_TTL_SECONDS) or the type switches again."
        )
    raise PublicationRefused(
        f"{why}; the aliases are back on {', '.join(previous) or 'nothing'}.{retired} Publish again once Redis answers."
    ) from error


def _servable(writer: SegmentIndexWriter, segment_type: str, index: str) -> SegmentIndex:
    # By name first: on a cluster that prefixes share, another deployment's index can hold
    # the same type, verified, and its own retention would delete it from under this alias.
    if not is_index_name(writer.prefix, index, segment_type):
        raise PublicationRefused(f"{index} is not a {segment_type} calculation's index under prefix {writer.prefix!r}")
    found = writer.segment_index(index)
    if found is None:
        raise PublicationRefused(f"index {index} does not exist (deleted by retention, or its load failed)")
    if found.meta.get("segment_type") != segment_type:
        raise PublicationRefused(f"index {index} holds {found.meta.get('segment_type')!r}, not {segment_type!r}")
    if not found.verified:
        raise PublicationRefused(f"index {index} was never verified complete; it cannot be served")
    return found


def publish_index(
    writer: SegmentIndexWriter, client: SyncRedis, segment_type: str, index: str, retention: int
) -> AliasMove:
    """Serves `index` unless a newer calculation is served already (a backfill must not un-publish
    today's data), starting its merge into one Lucene segment; then applies retention."""
    candidate = _servable(writer, segment_type, index)
    indices = {i.name: i for i in writer.type_indices(segment_type)}
    served = [indices[name] for name in writer.served_indices(segment_type) if name in indices]
    newest_served = max(served, key=lambda i: i.publication_order, default=None)
    if newest_served is not None and newest_served.name == index and "generation" in candidate.meta:
        move = AliasMove(index, [index], None)
    elif newest_served is not None and newest_served.publication_order > candidate.publication_order:
        move = AliasMove(newest_served.name, [newest_served.name], None, kept_newer=True)
    else:
        previous, generation, problems = _switch(writer, client, segment_type, index)
        move = AliasMove(index, previous, generation, compaction=_start_compaction(writer, index), problems=problems)
    deleted, unfinished = apply_retention(writer, segment_type, retention)
    return replace(move, deleted=deleted, problems=move.problems + unfinished)


def _start_compaction(writer: SegmentIndexWriter, index: str) -> str:
    """The merge is only an optimization of an index already served: it never fails the publish."""
    try:
        return f"task {writer.compact(index)}"
    except (ApiError, TransportError) as error:
        return f"not started: {type(error).__name__}: {error}"


def roll_back(writer: SegmentIndexWriter, client: SyncRedis, segment_type: str, to: str | None = None) -> AliasMove:
    """Serves the retained index calculated just before the served one, or the one named, even if older."""
    served = writer.served_indices(segment_type)
    if to is None:
        verified = [i for i in writer.type_indices(segment_type) if i.verified]
        position = next((n for n, i in enumerate(verified) if i.name in served), None)
        if position is None or position == 0:
            retained = ", ".join(i.name for i in verified) or "none"
            raise PublicationRefused(
                f"no retained {segment_type} index older than the served one ({', '.join(served) or 'none'}); "
                f"retained: {retained}"
            )
        to = verified[position - 1].name
    _servable(writer, segment_type, to)
    if served == [to]:
        return AliasMove(to, served, None)
    previous, generation, problems = _switch(writer, client, segment_type, to)
    return AliasMove(to, previous, generation, problems=problems)


def apply_retention(writer: SegmentIndexWriter, segment_type: str, keep: int) -> tuple[list[str], list[str]]:
    """Deletes every index of the type but the served ones and the `keep` newest verified ones;
    answers (the indices deleted, what stopped it): it runs after a switch, which a failure here
    must not be mistaken for undoing, and the next publish applies it again.

    Unverified indices (a failed load or check left them) go too: under the type's lock no load is
    running, so none of them can still become servable.
    """
    deleted: list[str] = []
    try:
        served = set(writer.served_indices(segment_type))
        verified = [i for i in writer.type_indices(segment_type) if i.verified]
        kept = served | {i.name for i in verified[-keep:]}
        for name in [i.name for i in writer.type_indices(segment_type) if i.name not in kept]:
            writer.delete_index(name)
            deleted.append(name)
    except (ApiError, TransportError) as error:
        return deleted, [f"retention stopped ({error}); the next publish applies it"]
    return deleted, []
