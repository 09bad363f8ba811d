"""What ``remstate watch`` shows: the live table's rows and the SSE event's encoding."""

from __future__ import annotations

import io
import json
from datetime import timedelta

from rich.console import Console

from remstate.cli.watch import LiveTable
from remstate.objects import WatchEventType
from remstate.schema import StateSummary
from remstate.service.events import Event, position_of
from remstate.watching import Change
from tests.helpers import T0


def summary(task_id: str, *, minutes: int, status: str = "pending") -> StateSummary:
    return StateSummary(
        task_id=task_id,
        name=f"task-{task_id}-state",
        status=status,
        iteration=3,
        max_iterations=10,
        max_iterations_stored=True,
        last_update=T0 + timedelta(minutes=minutes),
        lifecycle="active",
        soft_deleted_at=None,
        ttl=None,
        resource_version=str(100 + minutes),
    )


class Clock:
    def __init__(self) -> None:
        self.now = T0 + timedelta(hours=1)

    def __call__(self):  # type: ignore[no-untyped-def]
        return self.now


def rendered(table: LiveTable) -> list[str]:
    console = Console(file=io.StringIO(), width=120, record=True, color_system=None)
    console.print(table)
    return [line for line in console.export_text().splitlines() if "│" in line]


class TestLiveTable:
    def test_newest_activity_first_with_the_last_event_and_its_age(self) -> None:
        """A change moves its task to the top and says what happened, and how long ago."""
        clock = Clock()
        table = LiveTable(clock)
        table.seed([summary("old", minutes=1), summary("newer", minutes=5)])
        table.apply(
            Change(WatchEventType.MODIFIED, summary("old", minutes=2, status="failed"), "9")
        )
        clock.now += timedelta(seconds=42)
        rows = rendered(table)
        assert [row.split("│")[1].strip() for row in rows] == ["old", "newer"]
        assert "failed" in rows[0]
        assert "3/10" in rows[0]
        assert "MODIFIED 42s ago" in rows[0]


class TestEvent:
    def test_an_event_is_id_event_and_one_line_of_data(self) -> None:
        """``id:``, ``event:``, ``data:`` on one line (a newline in a value too), a blank line."""
        change = Change(WatchEventType.ADDED, summary("a\nb", minutes=0), "100")
        event = Event("added", change.to_dict(), id="100", change=change)
        lines = event.encode().split("\n")
        assert lines[:2] == ["id: 100", "event: added"]
        assert lines[2].startswith("data: ")
        assert json.loads(lines[2].removeprefix("data: "))["task"]["task_id"] == "a\nb"
        assert lines[3:] == ["", ""]

    def test_no_id_when_none(self) -> None:
        """A relisted change (no id) does not move a client's Last-Event-ID."""
        assert Event("ready", {}).encode() == "event: ready\ndata: {}\n\n"

    def test_positions_are_numbers_only(self) -> None:
        """A resourceVersion to resume from is digits; anything else is not a position."""
        assert position_of("812") == 812
        assert [position_of(v) for v in ("", "abc", "-1", "1.5", "٣")] == [None] * 5
