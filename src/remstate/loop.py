"""A background loop that runs a job (the TTL cleanup) every interval, in a thread of its own.

The loop knows nothing of cleanup: it runs the callable it is given (the
service passes ``lambda: manager.cleanup_old_states()``). The constraints it
lives under:

- **Time is injected.** ``clock`` (seconds, ``time.monotonic`` by default)
  says when the next run is due; ``wait`` (``threading.Event.wait`` by
  default) waits for it, and returns early when the loop is stopped. Tests
  pass a fake clock and a fake wait, and never sleep.
- **Stopping is immediate.** ``stop()`` sets the event the loop waits on and
  joins the thread: a six-hour wait ends at once. A run already under way
  finishes first (its writes are compare-and-swaps; cutting it off would only
  leave work for the next run); ``stop(timeout=...)`` bounds that wait.
- **A failing run never ends the loop.** Its exception is logged (with the
  traceback) and counted in ``failures`` (and in ``cleanup_errors_total``
  when ``metrics`` is given); the next run comes one interval later.
- **Runs never overlap**, neither with each other nor with ``run_once()``;
  one that overran its interval is followed by the next at once, not by a
  burst of the runs it missed.
- **Restartable**, for leader election: the service starts the loop when it
  becomes the leader and stops it when it loses the lease; ``start()`` after
  ``stop()`` starts a new thread, with a new schedule.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Generic, TypeVar

from remstate.arguments import bool_argument
from remstate.errors import InvalidInput
from remstate.metrics import Metrics
from remstate.schema.durations import duration_argument

__all__ = ["DEFAULT_INTERVAL", "CleanupLoop"]

_T = TypeVar("_T")

#: How often cleanup runs unless told otherwise.
DEFAULT_INTERVAL = timedelta(hours=6)

logger = logging.getLogger(__name__)


class CleanupLoop(Generic[_T]):
    """Runs ``job`` every ``interval`` in a daemon thread, until stopped.

    Args:
        job: what to run; its result is kept in ``last_result``.
        interval: a timedelta, ``"6h"``, or seconds (6 hours by default).
        run_at_start: run as soon as the loop starts, rather than one interval later.
        clock: seconds on a monotonic scale (``time.monotonic``).
        wait: ``wait(event, seconds)`` waits until the event is set or the
            seconds pass, and returns whether the event is set
            (``threading.Event.wait``). It may return early; the loop reads
            the clock again.
        metrics: if given, a failed run counts in ``cleanup_errors_total{kind}``.
        name: the thread's name, and the loop's in its log records.

    Raises:
        InvalidInput: a bad interval (not positive, not a duration) or argument.
    """

    def __init__(
        self,
        job: Callable[[], _T],
        *,
        interval: timedelta | str | float = DEFAULT_INTERVAL,
        run_at_start: bool = False,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[threading.Event, float], bool] = threading.Event.wait,
        metrics: Metrics | None = None,
        name: str = "remstate-cleanup",
    ) -> None:
        if not callable(job):
            raise InvalidInput(f"job must be callable, not {type(job).__name__}")
        if not callable(clock) or not callable(wait):
            raise InvalidInput("clock and wait must be callables")
        bool_argument(run_at_start, "run_at_start")
        if metrics is not None and not isinstance(metrics, Metrics):
            raise InvalidInput(
                f"metrics must be a remstate.metrics.Metrics, not {type(metrics).__name__}"
            )
        self.job = job
        self.interval = duration_argument(interval, "interval").total_seconds()
        self.run_at_start = run_at_start
        self.name = name
        self._clock = clock
        self._wait = wait
        self._metrics = metrics
        #: Runs finished (successful or not), and those of them that raised.
        self.runs = 0
        self.failures = 0
        self.last_result: _T | None = None
        self.last_error: BaseException | None = None
        self._lock = threading.Lock()  # start and stop
        self._running = threading.Lock()  # one run at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def is_running(self) -> bool:
        """Whether the loop's thread is alive (started and not yet stopped)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Start the thread; nothing if it is running already.

        A loop being stopped (``stop`` timed out while a run finished) is
        running no longer: a new thread starts, and its first run waits for
        that one to end.
        """
        with self._lock:
            if self.is_running and not self._stop.is_set():
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._loop, args=(self._stop,), name=self.name, daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop the loop: end its wait at once, and join its thread.

        A run under way finishes first, unless ``timeout`` seconds pass (then
        the thread ends after that run). Nothing if it is not running.
        Returns whether the thread has ended.
        """
        with self._lock:
            self._stop.set()
            thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True  # stopped from within a run: the loop ends after it
        thread.join(timeout)
        return not thread.is_alive()

    def run_once(self) -> _T:
        """Run the job now, in the caller's thread, after any run under way.

        Counted and logged as a scheduled run is, but its exception is raised
        to the caller. It does not move the loop's schedule.
        """
        with self._running:
            return self._run()

    def __enter__(self) -> CleanupLoop[_T]:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self, stop: threading.Event) -> None:
        due = self._clock() + (0 if self.run_at_start else self.interval)
        logger.info("%s: started, every %ss", self.name, self.interval)
        while not stop.is_set():
            delay = due - self._clock()
            if delay > 0:
                self._wait(stop, delay)
                continue  # stopped, due, or woken early: look again
            started = self._clock()
            with self._running:
                if stop.is_set():
                    break
                # Logged and counted in _run: the loop goes on to the next run.
                with contextlib.suppress(Exception):
                    self._run()
            due = max(started + self.interval, self._clock())
        logger.info("%s: stopped after %d runs", self.name, self.runs)

    def _run(self) -> _T:
        try:
            result = self.job()
        except Exception as e:
            self.runs += 1
            self.failures += 1
            self.last_error = e
            if self._metrics is not None:
                self._metrics.cleanup_errors.labels(kind=type(e).__name__).inc()
            logger.exception(
                "%s: run %d failed: %s",
                self.name,
                self.runs,
                e,
                extra={"loop": self.name, "run": self.runs, "reason": type(e).__name__},
            )
            raise
        self.runs += 1
        self.last_result = result
        self.last_error = None
        return result
