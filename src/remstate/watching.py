"""Follow the tasks' heads as they change: one resumable watch, for the service's hub and
``remstate watch``.

Design constraint: a Store watch ends (its window runs out, the connection
drops, the API server restarts) and may be too old to resume (410 Gone, once
etcd or the embedded store compacted its history). A :class:`Follower` hides
both, as client-go's reflector does, so that its reader sees every change
once and in order:

- it starts with a metadata-only list (page by page, no data crosses the
  wire) of the heads (``managed_selector(role=ROLE_STATE)``): what it knows;
- it watches from that list's resourceVersion, and resumes from the last
  resourceVersion it saw whenever a watch ends or drops (an outage is waited
  out with a capped backoff);
- on Gone it lists again and reports the difference with what it knew: ADDED
  for a head it did not know, MODIFIED for one whose resourceVersion changed,
  DELETED for one that vanished; then it watches from the new list's version.

Each change carries the task's summary (``remstate.schema.summary``: the same
form as ``list_states``), built from the head's metadata. Blocking: the
service runs it in a thread of its own.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from remstate.errors import Gone, NotFound, Unavailable
from remstate.objects import StoredObject, WatchEventType
from remstate.schema.naming import ROLE_STATE, managed_selector
from remstate.schema.summary import StateSummary, summarize, summarize_head
from remstate.store.base import Store

__all__ = ["HEADS", "Change", "Follower"]

logger = logging.getLogger(__name__)

#: The label selector of the tasks' heads: what a follower watches.
HEADS: Final = managed_selector(role=ROLE_STATE)
#: How long one watch request lasts before it is renewed (client-go's reflector
#: picks 5 to 10 minutes): a long window costs one request per window.
DEFAULT_WINDOW: Final = 300.0
#: Heads per page of a (re)list.
PAGE_SIZE: Final = 500
#: The backoff after a failed watch or list, doubling from the first to the cap.
BACKOFF: Final = (0.2, 5.0)


@dataclass(frozen=True, slots=True)
class Change:
    """One change of a task's head.

    Attributes:
        type: ADDED, MODIFIED or DELETED.
        summary: the task as it is now (DELETED: as it was last).
        resource_version: where the stream stands after this change: resume
            after it. The head's own for a watched change; the list's for one
            found by a relist (after a Gone).
        relisted: found by a relist, not seen as it happened.
        previous_status: the task's status before this change, when the
            follower knew the task (so that a reader filtering on a status
            sees a task leave it).
    """

    type: WatchEventType
    summary: StateSummary
    resource_version: str
    relisted: bool = False
    previous_status: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """As JSON: ``{"type", "resource_version", "relisted", "previous_status", "task"}``."""
        return {
            "type": str(self.type),
            "resource_version": self.resource_version,
            "relisted": self.relisted,
            "previous_status": self.previous_status,
            "task": self.summary.to_dict(),
        }

    def concerns(self, statuses: frozenset[str]) -> bool:
        """Whether the task has, or had until this change, one of ``statuses``."""
        return self.summary.status in statuses or self.previous_status in statuses


@contextlib.contextmanager
def _closing(iterator: Iterator[Any]) -> Iterator[None]:
    """Close a generator when done with it (the Store contract says only Iterator)."""
    try:
        yield
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


class Follower:
    """The changes of the heads of one store, resumed across ends, drops and Gone.

    Args:
        store: the store to follow.
        default_max_iterations: shown for a task that stores no limit.
        window: seconds one watch request lasts before it is renewed.
        page_size: heads per page of a list.
        backoff: first and longest wait after a failed watch or list.
        on_watch: called each time a watch request is opened (to count them).
    """

    def __init__(
        self,
        store: Store,
        *,
        default_max_iterations: int = 10,
        window: float = DEFAULT_WINDOW,
        page_size: int = PAGE_SIZE,
        backoff: tuple[float, float] = BACKOFF,
        on_watch: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.default_max_iterations = default_max_iterations
        self.window = window
        self.page_size = page_size
        self.backoff = backoff
        self.on_watch = on_watch
        #: The resourceVersion to watch after; None until the first list.
        self.resource_version: str | None = None
        self._known: dict[str, StateSummary] = {}

    @property
    def known(self) -> Mapping[str, StateSummary]:
        """The heads as last seen, by object name."""
        return self._known

    def start(self) -> list[StateSummary]:
        """List the heads now (metadata only); watch from there. The summaries, listed.

        Raises:
            StoreError: the list failed (the caller retries or gives up).
        """
        self._known, self.resource_version = self._list()
        return list(self._known.values())

    def resume_from(self, resource_version: str) -> None:
        """Follow the changes after ``resource_version`` (from an earlier run), knowing none."""
        self._known = {}
        self.resource_version = resource_version

    def changes(
        self, stop: threading.Event | None = None, *, until: float | None = None
    ) -> Iterator[Change]:
        """Every change from :attr:`resource_version` on, until ``stop`` is set
        (or ``time.monotonic()`` reaches ``until``).

        Lists first if :meth:`start` was not called. Unavailable is waited out
        (with backoff) and the watch resumed; Gone relists.

        Raises:
            StoreError: other than Unavailable and Gone (Forbidden, say).
        """
        stop = stop or threading.Event()
        delay = self.backoff[0]
        while not stop.is_set():
            window = self.window
            if until is not None:
                window = min(window, until - time.monotonic())
                if window <= 0:
                    return
            try:
                if self.resource_version is None:
                    self.start()
                    continue
                if self.on_watch is not None:
                    self.on_watch()
                watch = self.store.watch(
                    label_selector=HEADS,
                    resource_version=self.resource_version,
                    timeout_seconds=window,
                )
                # Closed with this generator: the watch's connection is released at once.
                with _closing(watch):
                    for event in watch:
                        change = self._watched(event.type, event.object)
                        delay = self.backoff[0]
                        if change is not None:
                            yield change
                        if stop.is_set() or (until is not None and time.monotonic() >= until):
                            return
            except Gone:
                logger.info("watch from %s is gone (410): listing again", self.resource_version)
                yield from self._relist(stop)
            except Unavailable as e:
                if stop.is_set():
                    return
                logger.warning("watch dropped (%s): resuming from %s", e, self.resource_version)
                pause = delay if until is None else min(delay, until - time.monotonic())
                stop.wait(max(pause, 0.0))
                delay = min(delay * 2, self.backoff[1])

    # -- what a change is ----------------------------------------------------------------

    def _watched(self, kind: WatchEventType, obj: StoredObject) -> Change | None:
        self.resource_version = obj.resource_version or self.resource_version
        summary = self._summarize(obj)
        if summary is None:
            return None
        if kind is WatchEventType.DELETED:
            before = self._known.pop(obj.name, None)
        else:
            before = self._known.get(obj.name)
            self._known[obj.name] = summary
        previous = None if before is None else before.status
        return Change(kind, summary, obj.resource_version, previous_status=previous)

    def _relist(self, stop: threading.Event) -> Iterator[Change]:
        """List again; the difference with what was known, as changes at the list's version."""
        delay = self.backoff[0]
        while not stop.is_set():
            try:
                listed, version = self._list()
                break
            except Unavailable as e:
                logger.warning("relist failed (%s): trying again", e)
                stop.wait(delay)
                delay = min(delay * 2, self.backoff[1])
        else:
            return
        before, self._known, self.resource_version = self._known, listed, version
        for name, summary in listed.items():
            old = before.get(name)
            if old is None:
                yield Change(WatchEventType.ADDED, summary, version, relisted=True)
            elif old.resource_version != summary.resource_version:
                yield Change(
                    WatchEventType.MODIFIED,
                    summary,
                    version,
                    relisted=True,
                    previous_status=old.status,
                )
        for name, summary in before.items():
            if name not in listed:
                yield Change(
                    WatchEventType.DELETED,
                    summary,
                    version,
                    relisted=True,
                    previous_status=summary.status,
                )

    def _list(self) -> tuple[dict[str, StateSummary], str]:
        """Every head's summary (metadata only, paged) and the list's resourceVersion."""
        found: dict[str, StateSummary] = {}
        token: str | None = None
        version = ""
        while True:
            page = self.store.list(
                label_selector=HEADS,
                limit=self.page_size,
                continue_token=token,
                metadata_only=True,
            )
            version = version or page.resource_version
            for obj in page.items:
                summary = self._summarize(obj)
                if summary is not None:
                    found[obj.name] = summary
            token = page.continue_token
            if token is None:
                return found, version

    def _summarize(self, obj: StoredObject) -> StateSummary | None:
        """The head's summary from its metadata; else from its data (a watch carries it;
        a head from a metadata-only list is read once); None if it is gone."""
        summary = summarize(obj, default_max_iterations=self.default_max_iterations)
        if summary is not None:
            return summary
        if obj.data is None:
            try:
                obj = self.store.get(obj.name)
            except NotFound:
                return None
        return summarize_head(obj, default_max_iterations=self.default_max_iterations)
