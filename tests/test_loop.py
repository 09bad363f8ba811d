"""The background cleanup loop, on a fake clock: no test sleeps through an interval.

The fake wait returns whenever the fake time moves (as a real wait may wake
early), so the loop reads the clock again and waits again: each entry into a
wait is a point where the test knows the loop has done all it had to.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from remstate.errors import InvalidInput
from remstate.loop import DEFAULT_INTERVAL, CleanupLoop
from remstate.metrics import Metrics

HOUR = 3600.0
#: Real seconds a test waits for the loop's thread to reach its next wait: a bound, never a sleep.
PATIENCE = 10.0


class FakeTime:
    """A clock that moves only when told, and a wait that wakes when it moves or on stop."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits = 0  # entries into wait()
        self.pending: float | None = None  # the timeout of the wait under way
        self._cond = threading.Condition()

    def clock(self) -> float:
        return self.now

    def wait(self, event: threading.Event, timeout: float) -> bool:
        with self._cond:
            self.waits += 1
            self.pending = timeout
            start = self.now
            self._cond.notify_all()
            # Poll the event: setting it does not notify this condition.
            while not event.is_set() and self.now == start:
                self._cond.wait(0.01)
            self.pending = None
            return event.is_set()

    def move(self, seconds: float) -> None:
        """Move time on, and return at once."""
        with self._cond:
            self.now += seconds
            self._cond.notify_all()

    def advance(self, seconds: float) -> None:
        """Move time on, and wait until the loop has acted on it and waits again."""
        with self._cond:
            seen = self.waits
            self.now += seconds
            self._cond.notify_all()
            if not self._cond.wait_for(lambda: self.waits > seen, PATIENCE):
                raise AssertionError("the loop did not wait again")

    def until_waiting(self, count: int = 1) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self.waits >= count, PATIENCE):
                raise AssertionError("the loop never waited")


class Job:
    """Counts its calls; raises the failures it is given, in turn, then returns the call number."""

    def __init__(self, *failures: BaseException | None) -> None:
        self.calls = 0
        self.failures = list(failures)
        self.threads: list[str] = []

    def __call__(self) -> int:
        self.calls += 1
        self.threads.append(threading.current_thread().name)
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure
        return self.calls


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


@pytest.fixture
def loops() -> Iterator[list[CleanupLoop[Any]]]:
    """Loops a test makes, stopped after it even if it fails."""
    made: list[CleanupLoop[Any]] = []
    yield made
    for loop in made:
        loop.stop(timeout=PATIENCE)


def fake_loop(
    fake: FakeTime, job: Any, loops: list[CleanupLoop[Any]], **options: Any
) -> CleanupLoop[Any]:
    loop = CleanupLoop(job, clock=fake.clock, wait=fake.wait, **options)
    loops.append(loop)
    return loop


class TestSchedule:
    def test_runs_once_at_each_interval(self, fake: FakeTime, loops: list[Any]) -> None:
        """Nothing before the first interval; then one run per interval."""
        job = Job()
        loop = fake_loop(fake, job, loops, interval="1h")
        loop.start()
        fake.until_waiting()
        assert fake.pending == HOUR
        fake.advance(HOUR - 1)
        assert job.calls == 0
        assert fake.pending == 1
        fake.advance(1)
        assert job.calls == 1
        assert fake.pending == HOUR
        fake.advance(HOUR)
        fake.advance(HOUR)
        assert job.calls == 3
        assert loop.runs == 3
        assert loop.last_result == 3
        assert set(job.threads) == {"remstate-cleanup"}

    def test_six_hours_by_default(self, fake: FakeTime, loops: list[Any]) -> None:
        """With no interval given, the first run is six hours after the start."""
        job = Job()
        fake_loop(fake, job, loops).start()
        fake.until_waiting()
        assert fake.pending == DEFAULT_INTERVAL.total_seconds() == 6 * HOUR
        fake.advance(6 * HOUR)
        assert job.calls == 1

    def test_run_at_start_runs_before_the_first_wait(
        self, fake: FakeTime, loops: list[Any]
    ) -> None:
        """``run_at_start=True``: a run at once, then one per interval."""
        job = Job()
        fake_loop(fake, job, loops, interval=timedelta(minutes=30), run_at_start=True).start()
        fake.until_waiting()
        assert job.calls == 1
        assert fake.pending == 1800
        fake.advance(1800)
        assert job.calls == 2

    def test_a_run_that_overruns_is_followed_at_once_not_by_a_burst(
        self, fake: FakeTime, loops: list[Any]
    ) -> None:
        """A run that takes three intervals is followed by one run right away, not three."""
        job = Job()

        def slow() -> int:
            if job.calls == 0:
                fake.now += 3 * HOUR  # the first run takes three hours of (fake) time
            return job()

        fake_loop(fake, slow, loops, interval=HOUR).start()
        fake.until_waiting()
        fake.advance(HOUR)  # the first run, which ends 3 h later; the second starts at once
        assert job.calls == 2
        assert fake.waits == 2
        assert fake.pending == HOUR


class TestFailures:
    def test_a_failing_run_is_logged_and_counted_and_the_next_one_runs(
        self, fake: FakeTime, loops: list[Any], caplog: pytest.LogCaptureFixture
    ) -> None:
        """An exception in one run: logged with its traceback, counted, and the loop goes on."""
        job = Job(RuntimeError("the API server is away"), None)
        registry = CollectorRegistry()
        loop = fake_loop(fake, job, loops, interval=HOUR, metrics=Metrics(registry))
        loop.start()
        fake.until_waiting()
        with caplog.at_level(logging.ERROR, logger="remstate.loop"):
            fake.advance(HOUR)
        assert loop.is_running
        assert (loop.runs, loop.failures) == (1, 1)
        assert isinstance(loop.last_error, RuntimeError)
        [record] = caplog.records
        assert "the API server is away" in record.getMessage()
        assert record.exc_info is not None
        assert record.reason == "RuntimeError"  # type: ignore[attr-defined]
        labels = {"kind": "RuntimeError"}
        assert registry.get_sample_value("remstate_cleanup_errors_total", labels) == 1
        fake.advance(HOUR)
        assert (loop.runs, loop.failures, job.calls) == (2, 1, 2)
        assert loop.last_result == 2
        assert loop.last_error is None


class TestStop:
    def test_stop_ends_a_six_hour_wait_at_once(self, loops: list[Any]) -> None:
        """On the real clock and Event.wait: stop() returns in well under a second."""
        waiting = threading.Event()

        def wait(event: threading.Event, timeout: float) -> bool:
            waiting.set()
            return threading.Event.wait(event, timeout)

        job = Job()
        loop = CleanupLoop(job, wait=wait)
        loops.append(loop)
        loop.start()
        assert waiting.wait(PATIENCE)
        started = time.perf_counter()
        assert loop.stop() is True
        elapsed = time.perf_counter() - started
        assert elapsed < 0.5, elapsed
        assert not loop.is_running
        assert job.calls == 0

    def test_no_run_after_stop(self, fake: FakeTime, loops: list[Any]) -> None:
        """Once stopped, time passing runs nothing."""
        job = Job()
        loop = fake_loop(fake, job, loops, interval=HOUR)
        loop.start()
        fake.until_waiting()
        fake.advance(HOUR)
        loop.stop()
        waits = fake.waits
        fake.now += 100 * HOUR
        assert not loop.is_running
        assert (job.calls, fake.waits) == (1, waits)

    def test_start_and_stop_are_idempotent(self, fake: FakeTime, loops: list[Any]) -> None:
        """A second start keeps the one thread; stop before start, and twice, is harmless."""
        job = Job()
        loop = fake_loop(fake, job, loops, interval=HOUR)
        assert loop.stop() is True
        loop.start()
        thread = loop._thread
        loop.start()
        assert loop._thread is thread
        fake.until_waiting()
        assert fake.waits == 1
        loop.stop()
        loop.stop()
        assert not loop.is_running

    def test_restarts_after_stop_with_a_new_schedule(
        self, fake: FakeTime, loops: list[Any]
    ) -> None:
        """Stop on losing leadership, start on winning it again: the runs go on."""
        job = Job()
        loop = fake_loop(fake, job, loops, interval=HOUR)
        loop.start()
        fake.until_waiting()
        fake.advance(HOUR)
        loop.stop()
        fake.now += 30 * 60
        waits = fake.waits
        loop.start()
        assert loop.is_running
        fake.until_waiting(waits + 1)
        assert fake.pending == HOUR  # one interval from the new start
        fake.advance(HOUR)
        assert job.calls == 2

    def test_start_while_a_stop_waits_for_a_run_starts_a_new_loop(
        self, fake: FakeTime, loops: list[Any]
    ) -> None:
        """Leadership won back while the old run finishes: a new loop runs, after that run."""
        entered, release = threading.Event(), threading.Event()
        job = Job()

        def slow() -> int:
            entered.set()
            release.wait(PATIENCE)
            return job()

        loop = fake_loop(fake, slow, loops, interval=HOUR)
        loop.start()
        fake.until_waiting()
        fake.move(HOUR)
        assert entered.wait(PATIENCE)
        assert loop.stop(timeout=0.01) is False  # the run is under way
        waits = fake.waits
        loop.start()
        release.set()
        fake.until_waiting(waits + 1)  # the new loop waits its first interval
        assert loop.is_running
        fake.advance(HOUR)  # its run waits for the old one to end, if it has not
        assert (job.calls, loop.runs) == (2, 2)

    def test_a_context_manager_starts_and_stops(self, fake: FakeTime) -> None:
        """``with loop:`` runs it for the block, and stops it after."""
        job = Job()
        loop = CleanupLoop(job, interval=HOUR, clock=fake.clock, wait=fake.wait)
        with loop:
            assert loop.is_running
            fake.until_waiting()
            fake.advance(HOUR)
        assert not loop.is_running
        assert job.calls == 1


class TestRunOnce:
    def test_runs_in_the_callers_thread_and_returns_the_result(
        self, fake: FakeTime, loops: list[Any]
    ) -> None:
        """``run_once()`` runs now, returns the job's result, and leaves the schedule alone."""
        job = Job()
        loop = fake_loop(fake, job, loops, interval=HOUR)
        loop.start()
        fake.until_waiting()
        assert loop.run_once() == 1
        assert job.threads == [threading.current_thread().name]
        assert fake.pending == HOUR
        fake.advance(HOUR)
        assert (job.calls, loop.runs) == (2, 2)

    def test_raises_the_jobs_error_and_counts_it(self, fake: FakeTime) -> None:
        """A failing ``run_once()`` raises to its caller, and counts as a failure."""
        loop = CleanupLoop(Job(ValueError("bad")), clock=fake.clock, wait=fake.wait)
        with pytest.raises(ValueError, match="bad"):
            loop.run_once()
        assert (loop.runs, loop.failures) == (1, 1)


class TestArguments:
    @pytest.mark.parametrize(
        "options",
        [
            {"interval": 0},
            {"interval": -5},
            {"interval": "soon"},
            {"interval": True},
            {"run_at_start": "yes"},
            {"clock": 3},
            {"metrics": CollectorRegistry()},
        ],
        ids=["zero", "negative", "words", "bool", "run-at-start", "clock", "metrics"],
    )
    def test_bad_arguments_are_invalid_input(self, options: dict[str, Any]) -> None:
        """A bad interval or option is InvalidInput, and no thread starts."""
        before = threading.active_count()
        with pytest.raises(InvalidInput):
            CleanupLoop(Job(), **options)
        assert threading.active_count() == before

    def test_a_job_that_is_not_callable_is_invalid_input(self) -> None:
        """The job must be callable."""
        with pytest.raises(InvalidInput, match="callable"):
            CleanupLoop("cleanup")  # type: ignore[arg-type]
