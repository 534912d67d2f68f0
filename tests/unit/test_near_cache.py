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


def test_the_bytes_held_are_bounded_too() -> None:
    cache = NearCache(entries=100, max_bytes=10)
    cache.put("a", b"1234")
    cache.put("b", b"5678")
    cache.put("a", b"12")  # replaced: its old size no longer counts
    cache.put("c", b"9012")  # 2 + 4 + 4 = 10 bytes: all fit
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (b"12", b"5678", b"9012")
    cache.put("d", b"345")  # 13 bytes: the least recently used ("a") leaves, then "b"
    assert (cache.get("a"), cache.get("b")) == (None, None)
    assert (cache.get("c"), cache.get("d")) == (b"9012", b"345")
    cache.put("huge", b"x" * 11)  # larger than the whole budget: not kept, nothing evicted for it
    assert cache.get("huge") is None and cache.get("c") == b"9012"
