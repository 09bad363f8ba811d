"""The commands of ``remstate``: each a manager operation, its arguments and its output.

Every command takes the global options too (see ``options``); it runs with a
``Session`` that holds them. Errors are left to ``remstate.cli.main``, which
prints one line and exits with the documented code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from remstate.cli.options import Session, global_options, group_callback
from remstate.errors import NotFound
from remstate.manager import ErrorPage, FeedbackPage, IterationPage
from remstate.schema import TaskState

__all__ = ["app"]


def _root() -> None:
    """Keep the state of agent remediation loops in Kubernetes ConfigMaps."""


def _feedback() -> None:
    """Feedback history: add, list and resolve entries."""


app = typer.Typer(
    name="remstate",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.callback()(group_callback(_root, root=True))
feedback_app = typer.Typer()
feedback_app.callback()(group_callback(_feedback, root=False))
app.add_typer(feedback_app, name="feedback")


def _summary(state: TaskState) -> str:
    return (
        f"task {state.task_id}: iteration {state.iteration}, status {state.status}, "
        f"{state.feedback_total} feedback, {state.error_total} errors, "
        f"last update {state.to_dict()['last_update']}, {state.policy.describe()}"
    )


@app.command()
@global_options
def get(c: Session, task_id: str) -> None:
    """Show a task's state."""
    with c.manager("ro") as m:
        state = m.get_state(task_id)
    c.emit(state.to_dict(), lambda: _summary(state))


@app.command()
@global_options
def increment(
    c: Session,
    task_id: str,
    note: Annotated[str, typer.Option(help="a note kept in the iteration record")] = "",
    op_id: Annotated[
        str | None,
        typer.Option(
            "--id",
            help="an idempotency key (a step id, say): re-sent after it committed, "
            "it prints the iteration it got and increments nothing",
        ),
    ] = None,
) -> None:
    """Add one iteration; exit 4 at the maximum (idempotent by --id)."""
    with c.manager("rwc") as m:
        number = m.increment_iteration(task_id, note=note, op_id=op_id)
    c.emit({"task_id": task_id, "iteration": number}, lambda: str(number))


@app.command()
@global_options
def status(c: Session, task_id: str, value: str) -> None:
    """Set a task's status (pending, in_progress, awaiting_review, completed, failed, cancelled)."""
    with c.manager("rwc") as m:
        state = m.set_status(task_id, value)
    c.emit(state.to_dict(), lambda: _summary(state))


@app.command()
@global_options
def error(
    c: Session,
    task_id: str,
    message: str,
    record_id: Annotated[
        str | None,
        typer.Option("--id", help="an id, so that a retry is a no-op"),
    ] = None,
) -> None:
    """Record an error message for a task (idempotent by --id)."""
    with c.manager("rwc") as m:
        record = m.record_error(task_id, message, id=record_id)
    c.emit(record.to_dict(), lambda: "recorded")


#: The paging options every history listing takes, as the library's pages do.
Limit = Annotated[int, typer.Option(min=1, max=10_000)]
Cursor = Annotated[str | None, typer.Option(help="from a previous page")]
NewestFirst = Annotated[bool, typer.Option("--newest-first", help="newest first")]


def _emit_page(
    c: Session,
    key: str,
    records: list[dict[str, Any]],
    page: FeedbackPage | IterationPage | ErrorPage,
    line: Callable[[dict[str, Any]], str],
) -> None:
    """One page of a history: ``{key: [...], next_cursor, total}``, or a line a record."""

    def text() -> str:
        lines = [line(r) for r in records]
        if page.next_cursor:
            lines.append(f"next page: --cursor {page.next_cursor}")
        return "\n".join(lines)

    c.emit({key: records, "next_cursor": page.next_cursor, "total": page.total}, text)


@app.command()
@global_options
def iterations(
    c: Session,
    task_id: str,
    limit: Limit = 100,
    cursor: Cursor = None,
    newest_first: NewestFirst = False,
) -> None:
    """List iteration records, oldest first (or newest first), one page at a time."""
    with c.manager("ro") as m:
        page = m.get_iteration_history(
            task_id, limit=limit, cursor=cursor, newest_first=newest_first
        )
    records = [r.to_dict() for r in page.records]
    _emit_page(
        c,
        "records",
        records,
        page,
        lambda r: f"{r['iteration']} {r['started_at']} {r.get('note', '')}".rstrip(),
    )


@app.command()
@global_options
def errors(
    c: Session,
    task_id: str,
    limit: Limit = 100,
    cursor: Cursor = None,
    newest_first: NewestFirst = False,
) -> None:
    """List error records, oldest first (or newest first), one page at a time."""
    with c.manager("ro") as m:
        page = m.get_errors(task_id, limit=limit, cursor=cursor, newest_first=newest_first)
    records = [r.to_dict() for r in page.records]
    _emit_page(c, "records", records, page, lambda r: f"{r.get('timestamp', '-')} {r['message']}")


@app.command()
@global_options
def delete(c: Session, task_id: str) -> None:
    """Delete a task's state and its history; exit 3 if it had none."""
    with c.manager("rw") as m:
        if not m.delete_state(task_id):
            raise NotFound(f"no state for task {task_id!r}")
    c.emit({"task_id": task_id, "deleted": True}, lambda: "deleted")


@feedback_app.command("add")
@global_options
def feedback_add(  # noqa: PLR0917 - typer maps options to parameters
    c: Session,
    task_id: str,
    description: str,
    author: Annotated[str, typer.Option(help="who gave the feedback")],
    severity: Annotated[str, typer.Option(help="critical, high, medium, low or info")] = "medium",
    issue_type: Annotated[str, typer.Option("--type", help="bug, security, style, ...")] = "other",
    entry_id: Annotated[
        str | None, typer.Option("--id", help="an id, so that a retry is a no-op")
    ] = None,
) -> None:
    """Append a feedback entry (idempotent by --id)."""
    with c.manager("rwc") as m:
        entry = m.append_feedback(
            task_id,
            author=author,
            severity=severity,
            issue_type=issue_type,
            description=description,
            id=entry_id,
        )
    c.emit(entry.to_dict(), lambda: entry.id)


@feedback_app.command("list")
@global_options
def feedback_list(
    c: Session,
    task_id: str,
    limit: Limit = 100,
    cursor: Cursor = None,
    newest_first: NewestFirst = False,
) -> None:
    """List feedback, oldest first (or newest first), one page at a time."""
    with c.manager("ro") as m:
        page = m.get_feedback_history(
            task_id, limit=limit, cursor=cursor, newest_first=newest_first
        )

    entries = [e.to_dict() for e in page.entries]
    _emit_page(c, "entries", entries, page, _feedback_line)


def _feedback_line(entry: dict[str, Any]) -> str:
    mark = "x" if entry["resolved"] else " "
    kind = f"{entry['severity']}/{entry['issue_type']}"
    return f"[{mark}] {entry['id']} {kind} {entry['author']}: {entry['description']}"


@feedback_app.command("resolve")
@global_options
def feedback_resolve(c: Session, task_id: str, entry_id: str) -> None:
    """Mark a feedback entry resolved."""
    with c.manager("rw") as m:
        entry = m.resolve_feedback(task_id, entry_id)
    stored = entry.to_dict()
    c.emit(stored, lambda: _feedback_line(stored))


@app.command()
@global_options
def demo(c: Session, task_id: str = "demo") -> None:
    """Run one small remediation loop on the store and print its state."""
    with c.manager("rwc") as m:
        m.delete_state(task_id)
        m.set_status(task_id, "in_progress")
        m.increment_iteration(task_id, note="first attempt")
        m.append_feedback(
            task_id,
            author="reviewer",
            severity="high",
            issue_type="bug",
            description="the retry loop can double-count",
            id="demo-1",
        )
        m.increment_iteration(task_id, note="fixed the retry loop")
        m.resolve_feedback(task_id, "demo-1")
        m.set_status(task_id, "completed")
        state = m.get_state(task_id)
    c.emit(state.to_dict(), lambda: f"store: {c.store_url}\n{_summary(state)}")
