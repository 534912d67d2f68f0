"""The per-process near cache in front of Redis: bounded, least recently used out first."""

from __future__ import annotations

from resources.serving.cache import NearCache


def test_the_least_recently_used_entry_leaves_first() -> None:
    cache = NearCache(entries=2)
    cache.put("a", b"1")
    cache.put("b", b"2")
    assert cache.get("a") == b"1"  # "a" is now the most recent
    cache.put("c", b"3")
    assert cache.get("b") is None
    assert (cache.get("a"), cache.get("c")) == (b"1", b"3")


def test_zero_entries_turns_it_off() -> None:
    cache = NearCache(entries=0)
    cache.put("a", b"1")
    assert cache.get("a") is None
