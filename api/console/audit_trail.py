"""A segment's audit entries as the console shows them: per entry, each field that changed, before
and after (params and labels one key at a time)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from resources.config_store.segments import AuditEntry

# Left out: bookkeeping, and the targeting attributes, which only repeat the params they come from.
NOT_SHOWN = frozenset(
    {"id", "version", "created_by", "updated_by", "segment_type", "store_id", "category", "city", "country"}
)


@dataclass(frozen=True)
class Change:
    field: str
    before: str | None  # None: the field was not there
    after: str | None


def changes(entry: AuditEntry) -> list[Change]:
    before, after = _flat(entry.before or {}), _flat(entry.after or {})
    return [
        Change(name, _text(before[name]) if name in before else None, _text(after[name]) if name in after else None)
        for name in sorted(before.keys() | after.keys(), key=_field_order)
        if before.get(name) != after.get(name) or (name in before) != (name in after)
    ]


def _flat(snapshot: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in snapshot.items():
        if name in NOT_SHOWN or value is None:  # unset: shown as absent, not as "null"
            continue
        if name in ("params", "labels") and isinstance(value, dict):
            flat.update({f"{name}.{key}": v for key, v in value.items()})
        else:
            flat[name] = value
    return flat


def _field_order(name: str) -> tuple[int, str]:
    order = ["name", "status", "description", "params", "labels"]
    head = name.split(".", 1)[0]
    return (order.index(head) if head in order else len(order), name)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
