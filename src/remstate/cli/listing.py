"""``remstate ls`` and ``remstate init``: the tasks of a store, and a new task with its policy.

Registers on ``remstate.cli.commands.app`` when imported (``remstate.cli``
imports it).

``ls`` reads the heads' metadata only (``StateManager.list_states``), one
request a page. Without ``--all`` it prints one page (``--limit``, 100 by
default) and, when there are more, how to ask for the next (``--cursor``);
with ``--all`` it pages until the end. Output:

- on a terminal, a table (rich): task, status, iteration/max, last update, age;
- piped, the same columns as plain text, padded with spaces, a header first
  (as kubectl prints); the hint for the next page goes to stderr, so a pipe
  gets only rows;
- ``-o json``: one JSON object, ``{"tasks": [...], "next_cursor": ...}``, each
  task as ``StateSummary.to_dict`` (the same form as the HTTP list);
  ``next_cursor`` is null after ``--all`` or on the last page. One object
  rather than JSON Lines, as every other listing of the CLI (``feedback
  list``, ``iterations``): a consumer reads the cursor where it reads the tasks.

A soft-deleted task shows its status as ``completed (soft-deleted)``; an
iteration ``3/10*`` is a task that stores no limit (written before policies),
10 being this command's default; ``?`` is a value the head does not hold readably.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from remstate.cli.commands import _summary as summary
from remstate.cli.commands import app
from remstate.cli.options import Output, Session, global_options, global_options_but
from remstate.errors import InvalidInput
from remstate.manager import StateManager
from remstate.schema import MAX_ITERATIONS_LIMIT, StateSummary, format_timestamp, utc_now
from remstate.schema.durations import parse_duration

__all__ = ["init", "ls"]

_COLUMNS = ("TASK", "STATUS", "ITERATION", "LAST UPDATE", "AGE")


def age(delta: timedelta) -> str:
    """kubectl's short age: ``45s``, ``12m``, ``5h``, ``3d`` (the largest whole unit)."""
    seconds = max(int(delta.total_seconds()), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _row(s: StateSummary, now: datetime) -> tuple[str, ...]:
    status = s.status if s.lifecycle == "active" else f"{s.status} ({s.lifecycle})"
    iteration = "?" if s.iteration is None else str(s.iteration)
    limit = str(s.max_iterations) if s.max_iterations_stored else f"{s.max_iterations}*"
    # To the second: the JSON form keeps the microseconds.
    last = "?" if s.last_update is None else format_timestamp(s.last_update.replace(microsecond=0))
    ago = "?" if s.last_update is None else age(now - s.last_update)
    return (s.task_id, status, f"{iteration}/{limit}", last, ago)


def _plain(rows: list[tuple[str, ...]]) -> str:
    """Columns padded with spaces, a header first (kubectl's form)."""
    table = [_COLUMNS, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(_COLUMNS))]
    return "\n".join(
        "   ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in table
    )


def _pages(
    m: StateManager,
    *,
    status: str | None,
    selector: str,
    limit: int,
    cursor: str | None,
    every: bool,
) -> Iterator[tuple[list[StateSummary], str | None]]:
    """The pages asked for: one, or (``every``) all from ``cursor`` on."""
    while True:
        page = m.list_states(status=status, label_selector=selector, limit=limit, cursor=cursor)
        yield page.summaries, page.next_cursor
        cursor = page.next_cursor
        if not every or cursor is None:
            return


@app.command()
@global_options
def ls(  # noqa: PLR0917 - typer maps options to parameters
    c: Session,
    status: Annotated[
        str | None, typer.Option(help="only tasks with this status", show_default=False)
    ] = None,
    selector: Annotated[
        str,
        typer.Option(
            "--selector", "-l", help="a label selector (team=a,env!=prod)", show_default=False
        ),
    ] = "",
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="tasks per page")] = 100,
    cursor: Annotated[
        str | None, typer.Option(help="the next page's cursor, from a previous ls")
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="every page, not only the first")] = False,
) -> None:
    """List tasks (one page, or --all): task, status, iteration/max, last update, age."""
    summaries: list[StateSummary] = []
    next_cursor: str | None = None
    with c.manager("ro") as m:
        for page, after in _pages(
            m, status=status, selector=selector, limit=limit, cursor=cursor, every=every
        ):
            summaries.extend(page)
            next_cursor = after
    if c.output is Output.json:
        c.emit({"tasks": [s.to_dict() for s in summaries], "next_cursor": next_cursor}, str)
        return
    now = utc_now()
    rows = [_row(s, now) for s in summaries]
    hint = f"more tasks: remstate ls --cursor {next_cursor} (or --all)" if next_cursor else ""
    console = Console(soft_wrap=False)
    if console.is_terminal:
        table = Table(*_COLUMNS)
        for row in rows:
            table.add_row(*row)
        console.print(table)
        if hint:
            console.print(hint, style="dim", soft_wrap=True, highlight=False)
        return
    if rows:
        typer.echo(_plain(rows))
    elif cursor is None:
        typer.echo("remstate: no tasks", err=True)  # as kubectl's "No resources found"
    if hint:
        typer.echo(f"remstate: {hint}", err=True)


@app.command()
@global_options_but("max_iterations")
def init(
    c: Session,
    task_id: str,
    max_iterations: Annotated[
        int | None,
        typer.Option(
            "--max-iterations",
            min=1,
            max=MAX_ITERATIONS_LIMIT,
            help="the task's iteration limit (default: the global one, 10)",
            show_default=False,
        ),
    ] = None,
    ttl: Annotated[
        str | None,
        typer.Option(
            help="how long the state is kept after its last update: 14d, 36h...",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Create a task with its policy, and print its state (an existing one is left as it is)."""
    try:
        duration = None if ttl is None else parse_duration(ttl)
    except InvalidInput as e:
        raise InvalidInput(f"--ttl: {e}") from None
    with c.manager("rwc") as m:
        state = m.get_or_create_state(task_id, max_iterations=max_iterations, ttl=duration)
    c.emit(state.to_dict(), lambda: summary(state))
