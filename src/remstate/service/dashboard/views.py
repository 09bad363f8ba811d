"""What the dashboard's templates show, computed from the library's values: pure functions.

Design constraint: the templates only lay out; every number, colour level and
relative time is decided here, where a unit test can check it without a
browser. No I/O: ``pages`` reads the store and hands the values in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from remstate.schema import FeedbackEntry, Severity, StateSummary, TaskState
from remstate.schema.naming import LIFECYCLE_SOFT_DELETED
from remstate.schema.values import KIND_FEEDBACK

__all__ = [
    "SEVERITIES",
    "Allowed",
    "Bar",
    "Cleanup",
    "FeedbackCounts",
    "LoopRow",
    "bar",
    "cleanup_state",
    "feedback_counts",
    "loop_row",
    "newest_first",
    "relative",
]

#: The severities, most severe first: the order of the count columns.
SEVERITIES: tuple[str, ...] = tuple(str(s) for s in Severity)


@dataclass(frozen=True, slots=True)
class Allowed:
    """The caller's verbs, as attributes: a template's ``can.update`` must not find
    ``dict.update`` (Jinja looks an attribute up before an item)."""

    get: bool
    list: bool
    create: bool
    update: bool
    delete: bool


@dataclass(frozen=True, slots=True)
class Bar:
    """An iteration bar: ``value`` of ``maximum``, ``percent`` wide, ``level`` its colour.

    ``level`` is ``ok``, ``near`` (within 80% of the limit, or one short of
    it) or ``limit`` (at the limit: the next increment is refused).
    """

    value: int | None
    maximum: int
    percent: int
    level: str


def bar(iteration: int | None, maximum: int) -> Bar:
    """The bar of ``iteration`` against ``maximum`` (an unreadable counter shows empty)."""
    if iteration is None or maximum <= 0:
        return Bar(iteration, maximum, 0, "ok")
    percent = min(100, round(100 * iteration / maximum))
    if iteration >= maximum:
        level = "limit"
    elif iteration >= maximum - 1 or iteration >= 0.8 * maximum:
        level = "near"
    else:
        level = "ok"
    return Bar(iteration, maximum, percent, level)


@dataclass(frozen=True, slots=True)
class FeedbackCounts:
    """Feedback counted by severity, open and resolved (of the entries in the head).

    ``archived``: entries moved to history segments, not counted by severity
    (counting them would read every segment; see ``pages``).
    """

    open: dict[str, int] = field(default_factory=dict)
    resolved: dict[str, int] = field(default_factory=dict)
    archived: int = 0

    @property
    def open_total(self) -> int:
        return sum(self.open.values())

    @property
    def resolved_total(self) -> int:
        return sum(self.resolved.values())


def feedback_counts(entries: Iterable[FeedbackEntry], *, archived: int = 0) -> FeedbackCounts:
    """Count ``entries`` by severity, open and resolved; most severe first."""
    opened: Counter[str] = Counter()
    resolved: Counter[str] = Counter()
    for e in entries:
        (resolved if e.resolved else opened)[str(e.severity)] += 1

    def ordered(c: Counter[str]) -> dict[str, int]:
        known = {s: c[s] for s in SEVERITIES if c[s]}
        return known | {s: n for s, n in sorted(c.items()) if s not in known}

    return FeedbackCounts(ordered(opened), ordered(resolved), archived)


@dataclass(frozen=True, slots=True)
class Cleanup:
    """The cleanup state: ``active``, or ``soft-deleted`` with the time left before the purge."""

    soft_deleted: bool
    purge_at: datetime | None = None
    left: timedelta | None = None

    @property
    def label(self) -> str:
        if not self.soft_deleted:
            return "active"
        if self.left is None:
            return "soft-deleted"
        if self.left <= timedelta(0):
            return "soft-deleted, purge due"
        return f"soft-deleted, purged in {_span(self.left)}"


def cleanup_state(summary: StateSummary, *, grace: timedelta, now: datetime) -> Cleanup:
    """Active, or soft-deleted with the grace period's time left (``grace`` from the service)."""
    if summary.lifecycle != LIFECYCLE_SOFT_DELETED:
        return Cleanup(soft_deleted=False)
    if summary.soft_deleted_at is None:
        return Cleanup(soft_deleted=True)
    purge_at = summary.soft_deleted_at + grace
    return Cleanup(soft_deleted=True, purge_at=purge_at, left=purge_at - now)


@dataclass(frozen=True, slots=True)
class LoopRow:
    """One row of the loops page."""

    summary: StateSummary
    bar: Bar
    counts: FeedbackCounts | None
    last_error: str | None
    cleanup: Cleanup
    updated: str


def loop_row(
    summary: StateSummary,
    state: TaskState | None,
    *,
    grace: timedelta,
    now: datetime,
) -> LoopRow:
    """The row of a task: its summary, and from its head (``None`` if unreadable) the rest."""
    counts = None
    last_error = None
    if state is not None:
        archived = state.first_seq(KIND_FEEDBACK)
        counts = feedback_counts(state.feedback_history, archived=archived)
        if state.error_messages:
            last_error = state.error_messages[-1].message
    return LoopRow(
        summary=summary,
        bar=bar(summary.iteration, summary.max_iterations),
        counts=counts,
        last_error=last_error,
        cleanup=cleanup_state(summary, grace=grace, now=now),
        updated=relative(summary.last_update, now),
    )


def newest_first(rows: Sequence[LoopRow]) -> list[LoopRow]:
    """``rows`` by last update, newest first (unknown times last, then by task ID)."""

    def key(r: LoopRow) -> tuple[float, str]:
        t = r.summary.last_update
        return (-(t.timestamp()) if t is not None else float("inf"), r.summary.task_id)

    return sorted(rows, key=key)


def relative(when: datetime | None, now: datetime) -> str:
    """``5 min ago``, ``in 3 h``: ``when`` relative to ``now``, coarse as people read it."""
    if when is None:
        return "unknown"
    delta = now - when
    if abs(delta) < timedelta(seconds=45):
        return "just now"
    text = _span(abs(delta))
    return f"{text} ago" if delta > timedelta(0) else f"in {text}"


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{max(seconds, 1)} s"
