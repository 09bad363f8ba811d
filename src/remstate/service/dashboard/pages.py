"""What each dashboard page reads from the manager: a page of loops, a task, a page of feedback.

Design constraint: **a page's cost does not grow with the number of tasks.**
The loops page is one metadata-only list of ``PAGE_SIZE`` heads (the
store's own cursor, as ``GET /api/v1/tasks`` pages) and one read of each of
those heads for what metadata does not carry: the feedback counts and the
last error. Those two are not kept as annotations on every write: counts by
severity and resolution would add an annotation per severity to every head
and a migration for the heads written before, while the page's own heads are
``PAGE_SIZE`` reads whatever the total (and the manager's cache decodes a
head only when its resourceVersion changed). Entries archived in history
segments are counted but not split by severity: that would read every
segment. The price: rows are ordered newest activity first **within a page**
(the store pages in name order; a global order by time would read every
head's metadata on every page view).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from remstate.errors import RemstateError
from remstate.manager import StateManager
from remstate.schema import ErrorRecord, FeedbackEntry, IterationRecord, StateSummary, TaskState
from remstate.schema.naming import LABEL_TASK, label_safe
from remstate.service.dashboard.views import LoopRow, loop_row, newest_first

__all__ = [
    "FEEDBACK_PAGE",
    "PAGE_SIZE",
    "FeedbackRows",
    "LoopsPage",
    "TaskView",
    "feedback_rows",
    "loops_page",
    "task_view",
]

#: Tasks on one page of the loops page.
PAGE_SIZE = 50
#: Feedback entries on one page of a task's feedback table.
FEEDBACK_PAGE = 20


@dataclass(frozen=True, slots=True)
class LoopsPage:
    rows: list[LoopRow]
    next_cursor: str | None


def _selector(task_id: str) -> str:
    return f"{LABEL_TASK}={label_safe(task_id)}"


def loops_page(
    m: StateManager,
    *,
    status: str | None,
    search: str,
    cursor: str | None,
    grace: timedelta,
    limit: int = PAGE_SIZE,
) -> LoopsPage:
    """One page of loops: ``status`` only, or the task whose ID is ``search`` (exact).

    The search is the task label's selector: one indexed lookup, not a scan of
    every task (a substring search would be one, and grow with the total).

    Raises:
        InvalidInput: a bad status or cursor. Gone: an expired cursor.
    """
    search = search.strip()
    page = m.list_states(
        status=status or None,
        label_selector=_selector(search) if search else "",
        limit=limit,
        cursor=cursor,
    )
    now = m.clock()
    summaries = [s for s in page.summaries if not search or s.task_id == search]
    rows = [loop_row(s, _head(m, s.task_id), grace=grace, now=now) for s in summaries]
    return LoopsPage(newest_first(rows), page.next_cursor)


def _head(m: StateManager, task_id: str) -> TaskState | None:
    """The task's head, or None when it is gone or unreadable (the row shows what metadata has)."""
    try:
        return m.get_state(task_id)
    except RemstateError:
        return None


def summary_of(m: StateManager, task_id: str) -> StateSummary | None:
    """The listing's summary of one task (its lifecycle, soft-delete time): one labelled list."""
    page = m.list_states(label_selector=_selector(task_id), limit=10)
    return next((s for s in page.summaries if s.task_id == task_id), None)


@dataclass(frozen=True, slots=True)
class FeedbackRows:
    entries: list[FeedbackEntry]
    next_cursor: str | None
    total: int


def feedback_rows(m: StateManager, task_id: str, cursor: str | None) -> FeedbackRows:
    """One page of the task's feedback, newest first, by the API's cursor."""
    page = m.get_feedback_history(task_id, limit=FEEDBACK_PAGE, cursor=cursor, newest_first=True)
    return FeedbackRows(list(page.entries), page.next_cursor, page.total)


@dataclass(frozen=True, slots=True)
class TaskView:
    state: TaskState
    resource_version: str
    summary: StateSummary | None
    iterations: list[IterationRecord]
    iterations_total: int
    feedback: FeedbackRows
    errors: list[ErrorRecord]
    errors_total: int
    snapshots: list[dict[str, Any]]


def task_view(m: StateManager, task_id: str, *, snapshots: bool) -> TaskView:
    """Everything the task page shows; ``snapshots`` when the caller may list them.

    Raises:
        StateNotFound: no such task. InvalidInput: a bad task ID.
    """
    state, version = m.get_versioned_state(task_id)
    iterations = m.get_iteration_history(task_id, limit=50, newest_first=True)
    errors = m.get_errors(task_id, limit=20, newest_first=True)
    feedback = feedback_rows(m, task_id, None)
    shots = [s.to_dict() for s in m.list_snapshots(task_id)] if snapshots else []
    return TaskView(
        state=state,
        resource_version=version,
        summary=summary_of(m, task_id),
        iterations=list(iterations.records),
        iterations_total=iterations.total,
        feedback=feedback,
        errors=list(errors.records),
        errors_total=errors.total,
        snapshots=shots,
    )
