"""Which index serves each segment type, as the API's cache sees it: what a cached entry is valid for.

The publisher records every switch in Redis (resources/publishing/aliases.py): the generation
counter, and per type "<generation> <index>" (`served_index_value`). A customer's cache entry
holds its segment ids per type under that generation, the type's *token*: `{"17": ["seg-1"],
"23": []}`. When one type switches, only its token changes, so what the entry holds of the other
types stays valid, and a lookup reads from Elasticsearch only the type that switched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# What one customer is in: {index: the ids of the segments it holds the customer in}
Held = dict[str, list[str]]
# A customer's cache entry: {a type's token: the ids of its segments in the type's index}
Entry = dict[str, list[str]]


@dataclass(frozen=True)
class ServedIndex:
    segment_type: str
    index: str
    token: str  # the generation the index was switched in under, as an entry's key


@dataclass(frozen=True)
class ServedIndices:
    generation: int  # the counter: it moves with every switch of any type
    types: dict[str, ServedIndex]
    by_index: dict[str, ServedIndex] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_index", {s.index: s for s in self.types.values()})

    @classmethod
    def parse(cls, generation: int, recorded: dict[bytes, bytes]) -> ServedIndices:
        """From the hash that `served_indices_key` names; a field that does not parse is left out."""
        types: dict[str, ServedIndex] = {}
        for segment_type, value in recorded.items():
            token, _, index = value.decode().partition(" ")
            if token.isdigit() and index:
                types[segment_type.decode()] = ServedIndex(segment_type.decode(), index, token)
        return cls(generation, types)

    def held_in(self, entry: Entry) -> tuple[Held, tuple[str, ...]]:
        """(what the entry holds of the served indices, the types it holds nothing valid of)."""
        held: Held = {}
        stale: list[str] = []
        for served in self.types.values():
            segment_ids = entry.get(served.token)
            if segment_ids is None:
                stale.append(served.segment_type)
            elif segment_ids:
                held[served.index] = segment_ids
        return held, tuple(stale)

    def entry_of(self, held: Held) -> Entry | None:
        """The cache entry of a customer whose every served type was read; None when a hit came
        from an index this view does not serve (a switch under way), which must not be cached."""
        if any(index not in self.by_index for index in held):
            return None
        return {served.token: held.get(served.index, []) for served in self.types.values()}
