"""The periodic cleanup runs only while this replica leads: ``LeaderOnly`` starts and stops it.

Design constraint: exactly one replica cleans up, and one that loses
leadership stops at once. ``LeaderOnly`` looks at ``leadership.is_leader()``
every ``poll`` seconds (a thread of its own, its wait injected so tests call
``step()`` instead), starting the loop when this replica becomes the leader
and stopping it when it stops being one. The job the service gives the loop
also asks ``is_leader()`` itself, just before each run (``leader_only``), so
a run never starts on a replica that lost the lease between two polls.
Polling rather than callbacks: it works with any ``Leadership``, and a
second of delay is nothing against a six-hour interval.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol, TypeVar

from remstate.service.leadership import Leadership

__all__ = ["LeaderOnly", "Startable", "leader_only"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


class Startable(Protocol):
    """What ``LeaderOnly`` drives: ``remstate.loop.CleanupLoop``."""

    @property
    def is_running(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self, timeout: float | None = None) -> bool: ...


def leader_only(leadership: Leadership, job: Callable[[], _T]) -> Callable[[], _T | None]:
    """``job``, run only if this replica leads when it is due (None otherwise)."""

    def run() -> _T | None:
        if not leadership.is_leader():
            logger.info("cleanup skipped: this replica is no longer the leader")
            return None
        return job()

    return run


class LeaderOnly:
    """Runs ``loop`` while ``leadership`` says this replica leads, and stops it otherwise."""

    def __init__(
        self,
        loop: Startable,
        leadership: Leadership,
        *,
        poll: float = 1.0,
        wait: Callable[[threading.Event, float], bool] = threading.Event.wait,
    ) -> None:
        self.loop = loop
        self.leadership = leadership
        self.poll = poll
        self._wait = wait
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self) -> bool:
        """Start or stop the loop as leadership now says; whether it runs after."""
        leading = self.leadership.is_leader()
        if leading and not self.loop.is_running:
            logger.info("leading: the periodic cleanup starts")
            self.loop.start()
        elif not leading and self.loop.is_running:
            logger.info("not leading (the leader is %s): cleanup stops", self.leadership.holder())
            self.loop.stop()
        return leading

    def start(self) -> None:
        """Follow leadership in a daemon thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._follow, name="remstate-leading", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop following, then stop the loop (a run under way finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.loop.stop(timeout)

    def _follow(self) -> None:
        while not self._stop.is_set():
            self.step()
            self._wait(self._stop, self.poll)
