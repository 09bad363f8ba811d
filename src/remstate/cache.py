"""The last object seen of each task, with its decoded state: one small class, one lock.

Why: an uncontended write is then one request (the resourceVersion we send is
the one we saw) and no decoding (the state is decoded once per
resourceVersion). The decoded history segments and filter pages are cached by
``remstate.history.HistoryReader``, keyed by identity (they never change); this cache holds heads,
which change.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from remstate.errors import NotFound
from remstate.objects import StoredObject
from remstate.schema import TaskState, decode_state, object_name

__all__ = ["DEFAULT_CACHE_SIZE", "LastSeen"]

#: How many tasks' last-seen objects a manager remembers.
DEFAULT_CACHE_SIZE = 1024


class LastSeen:
    """Each task's last-seen head object and, once known, its decoded state; thread-safe.

    ``get`` reads one object by name (the manager's, with its retry policy).
    """

    def __init__(self, get: Callable[[str], StoredObject], size: int = DEFAULT_CACHE_SIZE) -> None:
        self._get = get
        self._size = size
        self._seen: OrderedDict[str, tuple[StoredObject, TaskState | None]] = OrderedDict()
        self._lock = threading.Lock()

    def read(self, task_id: str) -> StoredObject | None:
        """The task's head read afresh (remembered), or None if it has none."""
        try:
            obj = self._get(object_name(task_id))
        except NotFound:
            self.forget(task_id)
            return None
        self.remember(task_id, obj)
        return obj

    def last_seen(self, task_id: str) -> tuple[StoredObject | None, bool]:
        """The remembered head, else one read afresh; and whether it came from memory."""
        with self._lock:
            seen = self._seen.get(task_id)
            if seen is not None:
                self._seen.move_to_end(task_id)
                return seen[0], True
        return self.read(task_id), False

    def decode(self, task_id: str, obj: StoredObject) -> TaskState:
        """The state of ``obj``, decoded once per resourceVersion."""
        with self._lock:
            seen = self._seen.get(task_id)
        previous = seen[1] if seen is not None else None
        if previous is not None and seen is not None and _same_version(seen[0], obj):
            return previous
        # A newer version mostly repeats what we decoded before: reuse those records.
        state = decode_state(obj, previous=previous)
        with self._lock:
            seen = self._seen.get(task_id)
            if seen is not None and _same_version(seen[0], obj):
                self._seen[task_id] = (obj, state)
        return state

    def remember(self, task_id: str, obj: StoredObject, state: TaskState | None = None) -> None:
        """Keep ``obj`` as the task's last-seen head (and ``state`` as its decoding)."""
        with self._lock:
            prev = self._seen.get(task_id)
            if state is None and prev is not None and _same_version(prev[0], obj):
                state = prev[1]  # a re-read of the version we know: keep its decoding
            self._seen[task_id] = (obj, state)
            self._seen.move_to_end(task_id)
            while len(self._seen) > self._size:
                self._seen.popitem(last=False)

    def forget(self, task_id: str) -> None:
        """Drop what we know of the task: the next operation reads it afresh."""
        with self._lock:
            self._seen.pop(task_id, None)


def _same_version(a: StoredObject, b: StoredObject) -> bool:
    return a.uid == b.uid and a.resource_version == b.resource_version
