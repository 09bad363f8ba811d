"""A small bounded cache whose entries expire: the authorizer's decision cache.

Hand-written rather than a dependency (``cachetools.TTLCache`` does the same):
thirty lines, an injectable clock, and hit/miss counts for the service's
figures. Thread-safe: the service's threadpool calls it concurrently. Pure
apart from the clock; no I/O.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from remstate.errors import InvalidInput

__all__ = ["TTLCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """At most ``max_entries`` values, each forgotten ``ttl`` seconds after it was put.

    When full, the entry put longest ago goes first (it also expires first).

    Raises:
        InvalidInput: a ttl that is negative or not a number, or a size below 1.
    """

    def __init__(
        self, ttl: float, max_entries: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl >= 0:
            raise InvalidInput(f"a cache ttl is a number of seconds >= 0, not {ttl!r}")
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise InvalidInput(f"a cache holds at least one entry, not {max_entries!r}")
        self.ttl = float(ttl)
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: K) -> V | None:
        """The value, if put less than ``ttl`` seconds ago; counts a hit or a miss."""
        now = self._clock()
        with self._lock:
            found = self._entries.get(key)
            if found is not None and found[0] > now:
                self.hits += 1
                return found[1]
            if found is not None:
                del self._entries[key]
            self.misses += 1
            return None

    def put(self, key: K, value: V) -> None:
        """Keep ``value`` for ``ttl`` seconds (a ttl of 0 keeps nothing)."""
        if self.ttl == 0:
            return
        expires = self._clock() + self.ttl
        with self._lock:
            self._entries.pop(key, None)
            self._entries[key] = (expires, value)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
