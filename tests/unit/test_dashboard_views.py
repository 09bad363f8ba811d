"""The dashboard's values (pure): the bar's colour, the counts, the cleanup state, times."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from remstate.schema import FeedbackEntry, StateSummary
from remstate.service.dashboard.views import bar, cleanup_state, feedback_counts, relative

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def test_the_bar_colours_near_and_at_the_limit() -> None:
    assert [bar(i, 10).level for i in (0, 7, 8, 9, 10, 12)] == [
        "ok",
        "ok",
        "near",
        "near",
        "limit",
        "limit",
    ]
    assert [bar(i, 3).level for i in (1, 2, 3)] == ["ok", "near", "limit"]
    assert bar(12, 10).percent == 100
    assert bar(None, 10) == bar(None, 10).__class__(None, 10, 0, "ok")


def entry(n: int, severity: str, *, resolved: bool = False) -> FeedbackEntry:
    e = FeedbackEntry.new(
        author="r", severity=severity, issue_type="bug", description="d", id=f"f{n}"
    )
    return dataclasses.replace(e, resolved=True, resolved_at=NOW) if resolved else e


def test_counts_split_open_and_resolved_most_severe_first() -> None:
    counts = feedback_counts(
        [entry(1, "low"), entry(2, "critical"), entry(3, "high", resolved=True), entry(4, "low")],
        archived=7,
    )
    assert list(counts.open.items()) == [("critical", 1), ("low", 2)]
    assert counts.resolved == {"high": 1}
    assert (counts.open_total, counts.resolved_total, counts.archived) == (3, 1, 7)


def summary(lifecycle: str, soft: datetime | None) -> StateSummary:
    return StateSummary(
        task_id="t",
        name="task-t-state",
        status="pending",
        iteration=1,
        max_iterations=10,
        max_iterations_stored=False,
        last_update=NOW,
        lifecycle=lifecycle,
        soft_deleted_at=soft,
        ttl=None,
        resource_version="1",
    )


def test_the_cleanup_state_counts_down_the_grace_period() -> None:
    day = timedelta(hours=24)
    assert cleanup_state(summary("active", None), grace=day, now=NOW).label == "active"
    soft = cleanup_state(summary("soft-deleted", NOW - timedelta(hours=3)), grace=day, now=NOW)
    assert soft.label == "soft-deleted, purged in 21 h"
    late = cleanup_state(summary("soft-deleted", NOW - 2 * day), grace=day, now=NOW)
    assert late.label == "soft-deleted, purge due"


def test_relative_times() -> None:
    assert relative(NOW - timedelta(seconds=10), NOW) == "just now"
    assert relative(NOW - timedelta(minutes=5), NOW) == "5 min ago"
    assert relative(NOW - timedelta(days=3, hours=2), NOW) == "3 d ago"
    assert relative(NOW + timedelta(hours=2), NOW) == "in 2 h"
    assert relative(None, NOW) == "unknown"
