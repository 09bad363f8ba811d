"""The periodic cleanup runs only while this replica leads, and stops at once when it does not."""

from __future__ import annotations

import threading

from remstate.service.leadership import Always
from remstate.service.leading import LeaderOnly, leader_only


class Switch(Always):
    """Leadership that the test hands over and takes back."""

    def __init__(self) -> None:
        super().__init__("replica-a")
        self.leading = False

    def is_leader(self) -> bool:
        return self.leading

    def holder(self) -> str | None:
        return "replica-a" if self.leading else "replica-b"


class Loop:
    """A loop that records being started and stopped (``CleanupLoop``'s surface)."""

    def __init__(self) -> None:
        self.running = False
        self.events: list[str] = []

    @property
    def is_running(self) -> bool:
        return self.running

    def start(self) -> None:
        self.running = True
        self.events.append("start")

    def stop(self, timeout: float | None = None) -> bool:
        self.running = False
        self.events.append("stop")
        return True


class TestLeaderOnly:
    def test_runs_while_leading_and_stops_when_not(self) -> None:
        """Each step follows leadership: start on gaining it, stop on losing it, once each."""
        leadership, loop = Switch(), Loop()
        gate = LeaderOnly(loop, leadership)
        assert gate.step() is False
        assert loop.events == []
        leadership.leading = True
        assert gate.step() is True
        assert gate.step() is True
        assert loop.events == ["start"]
        leadership.leading = False
        assert gate.step() is False
        assert loop.events == ["start", "stop"]

    def test_the_thread_follows_and_stop_stops_the_loop(self) -> None:
        """start() follows in a thread (its wait injected); stop() ends it and the loop."""
        leadership, loop = Switch(), Loop()
        leadership.leading = True
        polled = threading.Event()

        def wait(stop: threading.Event, seconds: float) -> bool:
            polled.set()
            return stop.wait(5)

        gate = LeaderOnly(loop, leadership, poll=3600, wait=wait)
        gate.start()
        assert polled.wait(5)
        assert loop.running
        gate.stop(timeout=5)
        assert not loop.running
        assert loop.events == ["start", "stop"]


class TestLeaderOnlyJob:
    def test_the_job_runs_only_on_the_leader(self) -> None:
        """A run that comes due after leadership was lost does nothing."""
        leadership, runs = Switch(), []
        job = leader_only(leadership, lambda: runs.append(1) or len(runs))
        assert job() is None
        leadership.leading = True
        assert job() == 1
        leadership.leading = False
        assert job() is None
        assert runs == [1]

    def test_always_leads_until_released(self) -> None:
        """A single process leads, names itself, and after release() leads no more."""
        always = Always("me")
        assert (always.is_leader(), always.holder()) == (True, "me")
        always.release()
        assert (always.is_leader(), always.holder()) == (False, None)
