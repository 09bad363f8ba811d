"""The service's live changes: ONE store watch per process, fanned out to every open stream.

Design constraint: a dashboard page, a ``curl`` and any other tool may each
hold an event stream (``GET /api/v1/events``) open, and there may be hundreds:
they must not cost a watch each on the API server. So one :class:`EventHub`
per process runs one :class:`remstate.watching.Follower` (one watch of the
heads, resumed after it ends or drops, relisting after 410 Gone) in a thread
of its own, started by the first subscriber, and hands each change to the
event loop (``loop.call_soon_threadsafe``). There every subscriber has a
bounded queue: one that does not read is dropped with a last ``resync``
event, never blocking the others.

The hub keeps the last ``replay`` events, so a stream that reconnects with
``Last-Event-ID`` (or ``?since=``) misses nothing; one that asks for an
older position than the hub holds gets ``resync`` (re-read the state, then
follow). Positions are resourceVersions, which on both backends are
integers that only grow (etcd's revision; the embedded store's counter): the
hub compares them, as the API server's watch cache does.

The events (what ``GET /events`` sends, in the Server-Sent Events format):

- ``added``, ``modified``, ``deleted``: ``id`` the resourceVersion, data
  :meth:`remstate.watching.Change.to_dict` (type, resource_version,
  relisted, task summary). A change found by a relist after a Gone has no
  ``id`` (it is not a point to resume after: its batch shares the list's
  version), so a reconnect replays that batch again rather than lose it.
- ``ready``: data ``{"resource_version", "replayed"}``, once per stream, when
  the hub follows the store and any replay is sent: every change after it
  reaches the stream.
- ``resync``: data ``{"reason", "resource_version"}``: changes were lost for
  this stream (it resumed from too old a position, or it read too slowly and
  is closed after this event); re-read the state.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
from prometheus_client import CollectorRegistry, Counter, Gauge

from remstate.errors import Unavailable
from remstate.retry import RetryPolicy
from remstate.store.base import Store
from remstate.watching import DEFAULT_WINDOW, Change, Follower

__all__ = ["HEARTBEAT", "Event", "EventHub", "Subscription", "position_of"]

logger = logging.getLogger(__name__)

#: Seconds between two heartbeats of an idle stream (a comment line), so that
#: proxies keep it open and a dead client is noticed.
HEARTBEAT: Final = 15.0
#: Events a subscriber may have waiting before it is dropped.
QUEUE_SIZE: Final = 1000
#: Events the hub keeps for streams that reconnect.
REPLAY: Final = 1000
#: Longest wait between two attempts when the store refuses the watch (Forbidden, say).
_RETRY_CAP: Final = 30.0


def position_of(resource_version: str) -> int | None:
    """A resourceVersion as a position to compare; None if it is not one (empty, not digits)."""
    value = resource_version.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 20:
        return None
    return int(value)


@dataclass(frozen=True, slots=True)
class Event:
    """One Server-Sent Event: its name, its ``id`` (None: none) and its JSON data."""

    kind: str
    data: dict[str, Any]
    id: str | None = None
    change: Change | None = None

    def encode(self) -> str:
        """The event in the ``text/event-stream`` format (the data on one line)."""
        head = f"id: {self.id}\n" if self.id is not None else ""
        body = json.dumps(self.data, ensure_ascii=False, separators=(",", ":"))
        return f"{head}event: {self.kind}\ndata: {body}\n\n"


def _event_of(change: Change) -> Event:
    return Event(
        kind=str(change.type).lower(),
        data=change.to_dict(),
        id=None if change.relisted else change.resource_version,
        change=change,
    )


@dataclass(eq=False)
class Subscription:
    """One stream's view of the hub: its queue, its filter, where it resumes from.

    Read it with :meth:`get`; ``None`` means the stream is over (the hub
    closed, or dropped this slow reader after a ``resync``).
    """

    hub: EventHub
    accepts: Callable[[Change], bool]
    since: int | None
    #: Events it may have waiting before it is dropped.
    limit: int = QUEUE_SIZE
    #: Unbounded itself: the hub bounds it (``queue_size``) and may add the last events.
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)

    async def get(self, timeout: float | None = None) -> Event | None:
        """The next event; ``None`` at the end.

        Raises:
            TimeoutError: none came within ``timeout`` seconds (time for a heartbeat).
        """
        return await asyncio.wait_for(self.queue.get(), timeout)

    def close(self) -> None:
        """Leave the hub (the stream ended)."""
        self.hub.unsubscribe(self)


class EventHub:
    """One watch of the store's heads, fanned out to every subscriber.

    Args:
        store: the store to follow (the manager's).
        retry: the policy of the first list (the manager's): past its deadline
            on an unavailable store, :meth:`start` raises ``Unavailable``.
        default_max_iterations: shown for a task that stores no limit.
        registry: where ``remstate_store_watches_total`` and the streams' metrics go.
        queue_size: events a subscriber may have waiting before it is dropped.
        replay: events kept for streams that reconnect.
        window: seconds one watch request lasts before it is renewed.
        heartbeat: seconds between heartbeats of an idle stream.
    """

    def __init__(
        self,
        store: Store,
        *,
        retry: RetryPolicy | None = None,
        default_max_iterations: int = 10,
        registry: CollectorRegistry | None = None,
        queue_size: int = QUEUE_SIZE,
        replay: int = REPLAY,
        window: float = DEFAULT_WINDOW,
        heartbeat: float = HEARTBEAT,
    ) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self._watches_total = Counter(
            "remstate_store_watches",
            "Watch requests the service's event hub opened on the store (one at a time, "
            "renewed every window, resumed after a drop)",
            registry=registry,
        )
        self._streams = Gauge("remstate_event_streams", "Event streams open now", registry=registry)
        self._dropped = Counter(
            "remstate_event_streams_dropped",
            "Event streams closed because they read too slowly",
            registry=registry,
        )
        self.heartbeat = heartbeat
        self.queue_size = queue_size
        self.watches = 0
        self._follower = Follower(
            store,
            default_max_iterations=default_max_iterations,
            window=window,
            on_watch=self._count_watch,
        )
        self._retry = retry or RetryPolicy()
        self._starting = asyncio.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: set[Subscription] = set()
        self._buffer: collections.deque[Event] = collections.deque(maxlen=replay)
        #: Events after this position are all in the buffer (None: not started).
        self._floor: int | None = None
        self._position = ""
        self._closed = False

    # -- what a reader sees ------------------------------------------------------------

    @property
    def position(self) -> str:
        """The resourceVersion the hub has followed the store to ("" before it started)."""
        return self._position

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def subscribe(
        self,
        *,
        accepts: Callable[[Change], bool] | None = None,
        since: str | None = None,
        queue_size: int | None = None,
    ) -> Subscription:
        """A new stream's subscription, once :meth:`start` returned. Call on the event loop.

        Args:
            accepts: which changes the stream wants (all by default).
            since: the resourceVersion the stream has seen (``Last-Event-ID``):
                later buffered changes are replayed, or ``resync`` is sent.
            queue_size: events it may have waiting before it is dropped (the hub's by default).

        Raises:
            Unavailable: the hub is closed (the service is stopping).
        """
        if self._closed:
            raise Unavailable("the service is stopping: no new event streams")
        if self._floor is None:
            raise RuntimeError("EventHub.subscribe before EventHub.start")
        sub = Subscription(
            self,
            accepts or (lambda _: True),
            None if since is None else position_of(since),
            limit=queue_size or self.queue_size,
        )
        self._subscribers.add(sub)
        self._streams.set(len(self._subscribers))
        self._catch_up(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)
        self._streams.set(len(self._subscribers))

    def close(self, *, join: float = 1.0) -> None:
        """End every stream and stop following the store. Call on the event loop.

        The watch thread stops at its next event or when its window ends (a
        blocked read cannot be interrupted); it is a daemon and delivers
        nothing more. ``join``: how long to wait for it.
        """
        self._closed = True
        self._stop.set()
        for sub in list(self._subscribers):
            self._end(sub)
        self._subscribers.clear()
        self._streams.set(0)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=join)

    def close_threadsafe(self) -> None:
        """:meth:`close`, from any thread (a signal handler, say)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self._closed = True
            self._stop.set()
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(lambda: self.close(join=0))

    # -- the watch thread --------------------------------------------------------------

    def _count_watch(self) -> None:
        self.watches += 1
        self._watches_total.inc()

    async def start(self) -> None:
        """Follow the store, if not yet: list the heads, then watch in a thread of its own.

        Idempotent; the first caller lists, the others wait for it.

        Raises:
            Unavailable: the store could not be listed within the retry
                policy's deadline (or the hub is closed); try again later.
            StoreError: the store refused the list (Forbidden, say).
        """
        async with self._starting:
            if self._closed:
                raise Unavailable("the service is stopping: no new event streams")
            if self._thread is not None:
                return
            follower = self._follower
            await anyio.to_thread.run_sync(lambda: self._retry.call(follower.start))
            self._loop = asyncio.get_running_loop()
            self._started(follower.resource_version)
            self._thread = threading.Thread(target=self._run, name="remstate-events", daemon=True)
            self._thread.start()

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        assert loop is not None
        loop.call_soon_threadsafe(callback, *args)

    # Catches everything on purpose: the thread must never die while the service
    # runs, nor raise into pytest's thread hook; each failure is logged, then retried.
    def _run(self) -> None:
        follower = self._follower
        delay = 1.0
        while not self._stop.is_set():
            try:
                for change in follower.changes(self._stop):
                    delay = 1.0
                    self._post(self._publish, change)
            except RuntimeError:
                return  # the event loop is closed: the service is gone
            except Exception as e:  # noqa: BLE001 - see above
                if self._stop.is_set():
                    return
                logger.warning("remstate events: following the store failed (%s); retrying", e)
                self._stop.wait(delay)
                delay = min(delay * 2, _RETRY_CAP)

    # -- on the event loop -------------------------------------------------------------

    def _started(self, resource_version: str | None) -> None:
        self._position = resource_version or ""
        self._floor = position_of(self._position) or 0

    def _catch_up(self, sub: Subscription) -> None:
        """Replay what ``sub`` missed (or tell it to resync), then say it is ready."""
        assert self._floor is not None
        replayed = 0
        if sub.since is not None:
            if sub.since < self._floor:
                self._offer(
                    sub,
                    Event(
                        "resync",
                        {"reason": "too-old", "resource_version": self._position},
                    ),
                )
            else:
                for event in self._buffer:
                    if self._wants(sub, event) and self._offer(sub, event):
                        replayed += 1
        self._offer(sub, Event("ready", {"resource_version": self._position, "replayed": replayed}))

    def _publish(self, change: Change) -> None:
        event = _event_of(change)
        if len(self._buffer) == self._buffer.maxlen and self._buffer:
            evicted = self._buffer[0].change
            if evicted is not None:
                self._floor = max(self._floor or 0, position_of(evicted.resource_version) or 0)
        self._buffer.append(event)
        self._position = change.resource_version
        for sub in list(self._subscribers):
            if self._wants(sub, event):
                self._offer(sub, event)

    @staticmethod
    def _wants(sub: Subscription, event: Event) -> bool:
        change = event.change
        if change is None or not sub.accepts(change):
            return False
        if sub.since is None:
            return True
        at = position_of(change.resource_version)
        return at is None or at > sub.since

    def _offer(self, sub: Subscription, event: Event) -> bool:
        """Queue ``event`` for ``sub``; a full queue drops the subscriber. Whether queued."""
        if sub not in self._subscribers:
            return False
        if sub.queue.qsize() >= sub.limit:
            logger.warning("remstate events: a stream read too slowly; closed with resync")
            self._dropped.inc()
            self.unsubscribe(sub)
            self._end(sub, Event("resync", {"reason": "slow", "resource_version": self._position}))
            return False
        sub.queue.put_nowait(event)
        return True

    @staticmethod
    def _end(sub: Subscription, last: Event | None = None) -> None:
        """Empty ``sub``'s queue and end it (after ``last``)."""
        while not sub.queue.empty():
            sub.queue.get_nowait()
        if last is not None:
            sub.queue.put_nowait(last)
        sub.queue.put_nowait(None)
