"""A cleanup report names at most MAX_ITEMS heads; its counts cover every head."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from remstate.cleanup.decisions import Action
from remstate.cleanup.report import MAX_ITEMS, Tally


def test_a_report_names_at_most_max_items_heads_and_counts_the_rest() -> None:
    tally = Tally(
        datetime(2026, 11, 1, tzinfo=UTC), timedelta(days=7), timedelta(days=1), True, False
    )
    for i in range(MAX_ITEMS + 25):
        tally.record(Action.SOFT_DELETE, f"task-{i}-state", str(i), "expired", str(i))
    tally.record(Action.WAIT, "task-w-state", "w", "in grace", "1")

    report = tally.report()

    assert report.soft_deleted == MAX_ITEMS + 25
    assert len(report.items) == MAX_ITEMS
    assert report.items_left_out == 25
    assert report.in_grace == 1
    assert report.to_dict()["items_left_out"] == 25
