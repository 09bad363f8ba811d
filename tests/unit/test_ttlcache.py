"""The authorizer's decision cache: values expire after the ttl, and the size is bounded."""

from __future__ import annotations

import pytest

from remstate.errors import InvalidInput
from remstate.service.ttlcache import TTLCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TestTTLCache:
    def test_a_value_lives_for_the_ttl_and_no_longer(self) -> None:
        """Found just before the ttl, gone at it; hits and misses are counted."""
        clock = Clock()
        cache: TTLCache[str, int] = TTLCache(10, 4, clock=clock)
        cache.put("k", 1)
        clock.now = 9.99
        assert cache.get("k") == 1
        clock.now = 10.0
        assert cache.get("k") is None
        assert (cache.hits, cache.misses) == (1, 1)
        assert len(cache) == 0

    def test_the_oldest_entry_goes_when_full(self) -> None:
        """At most max_entries; the one put longest ago is evicted first."""
        cache: TTLCache[int, int] = TTLCache(10, 2, clock=Clock())
        for k in range(3):
            cache.put(k, k)
        assert len(cache) == 2
        assert cache.get(0) is None
        assert cache.get(1) == 1
        assert cache.get(2) == 2

    def test_putting_again_renews(self) -> None:
        """A value put again lives a full ttl from then, and counts as the newest."""
        clock = Clock()
        cache: TTLCache[str, int] = TTLCache(10, 2, clock=clock)
        cache.put("a", 1)
        cache.put("b", 2)
        clock.now = 5
        cache.put("a", 3)
        cache.put("c", 4)  # evicts b, the oldest now
        clock.now = 14
        assert cache.get("a") == 3
        assert cache.get("b") is None

    def test_a_ttl_of_zero_keeps_nothing(self) -> None:
        """ttl 0: every decision is asked afresh."""
        cache: TTLCache[str, int] = TTLCache(0, 2, clock=Clock())
        cache.put("k", 1)
        assert cache.get("k") is None

    @pytest.mark.parametrize(("ttl", "size"), [(-1, 1), ("10", 1), (True, 1), (1, 0), (1, 1.5)])
    def test_refuses_a_bad_ttl_or_size(self, ttl: object, size: object) -> None:
        """A negative or non-numeric ttl, or a size below one: InvalidInput."""
        with pytest.raises(InvalidInput):
            TTLCache(ttl, size)  # type: ignore[arg-type]
