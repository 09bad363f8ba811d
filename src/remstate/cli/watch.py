"""``remstate watch [ID...] [--status S]``: the tasks' changes as they happen, from the store.

Registers on ``remstate.cli.commands.app`` when imported (``remstate.cli``
imports it).

It follows the store itself (``remstate.watching.Follower``: a metadata-only
list of the heads, then one watch resumed from the last resourceVersion
after it drops, and a relist after 410 Gone), not a service. The first list
must answer within the global ``--timeout`` (10 s by default, exit 6
otherwise); after that an outage is waited out and the watch resumes where
it was, until Ctrl-C (exit 0) or the command's own ``--timeout`` (exit 0).

``--status`` keeps the changes of tasks that have one of the statuses, or
had it until the change (a task leaving it is shown leaving).

Output:

- on a terminal, a live table (rich): task, status, iteration/max, last
  update, last event; newest activity first;
- piped, one line per change: type, task, status, iteration/max, resourceVersion;
- ``-o json``: JSON Lines, one object per change: ``{"type", "resource_version",
  "relisted", "previous_status", "task"}``, the task as ``remstate ls -o json`` shows it.
  Changes only, from the moment the command started (or after ``--since``,
  an earlier line's ``resource_version``). A change found by a relist after
  410 Gone has ``"relisted": true`` and the list's resourceVersion.

Once following, it says on stderr where it starts: ``remstate: watching
URL from resourceVersion N``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from remstate.cli.commands import app
from remstate.cli.listing import age
from remstate.cli.options import Output, Session, global_options_but
from remstate.errors import InvalidInput
from remstate.schema import StateSummary, format_timestamp, utc_now
from remstate.schema.durations import parse_duration
from remstate.schema.values import parse_status
from remstate.watching import Change, Follower

__all__ = ["LiveTable", "watch"]

_COLUMNS = ("TASK", "STATUS", "ITERATION", "LAST UPDATE", "LAST EVENT")
#: Rows the live table shows at most (newest activity first).
MAX_ROWS = 200


class LiveTable:
    """What the terminal shows: every task followed, with its last event. Rebuilt at
    each refresh, so that the ages move on between changes."""

    def __init__(self, clock: Callable[[], datetime] = utc_now) -> None:
        self.clock = clock
        self.rows: dict[str, StateSummary] = {}
        self.last: dict[str, tuple[str, datetime]] = {}

    def seed(self, summaries: list[StateSummary]) -> None:
        for s in summaries:
            self.rows[s.name] = s

    def apply(self, change: Change) -> None:
        self.rows[change.summary.name] = change.summary
        self.last[change.summary.name] = (str(change.type), self.clock())

    def row(self, s: StateSummary, now: datetime) -> tuple[str, ...]:
        iteration = "?" if s.iteration is None else str(s.iteration)
        last = (
            "?" if s.last_update is None else format_timestamp(s.last_update.replace(microsecond=0))
        )
        seen = self.last.get(s.name)
        event = "" if seen is None else f"{seen[0]} {age(now - seen[1])} ago"
        status = s.status if s.lifecycle == "active" else f"{s.status} ({s.lifecycle})"
        return (s.task_id, status, f"{iteration}/{s.max_iterations}", last, event)

    def __rich__(self) -> Table:
        now = self.clock()
        table = Table(*_COLUMNS)
        floor = datetime.min.replace(tzinfo=now.tzinfo)
        newest = sorted(
            self.rows.values(),
            key=lambda s: max(s.last_update or floor, self.last.get(s.name, ("", floor))[1]),
            reverse=True,
        )
        for s in newest[:MAX_ROWS]:
            table.add_row(
                *self.row(s, now),
                style="dim" if self.last.get(s.name, ("",))[0] == "DELETED" else None,
            )
        return table


def _line(change: Change) -> str:
    s = change.summary
    iteration = "?" if s.iteration is None else str(s.iteration)
    where = f"{iteration}/{s.max_iterations}"
    return f"{change.type} {s.task_id} {s.status} {where} {change.resource_version}"


@app.command()
@global_options_but("timeout")
def watch(
    c: Session,
    tasks: Annotated[
        list[str] | None, typer.Argument(help="only these tasks", show_default=False)
    ] = None,
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status", help="only tasks with this status (repeat it)", show_default=False
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="resume after this resource_version (of an earlier line)", show_default=False
        ),
    ] = None,
    timeout: Annotated[
        str | None,
        typer.Option(
            "--timeout",
            help="stop after this long (30s, 5m, 1h), exit 0; default: Ctrl-C",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Stream the tasks' changes: a live table, or JSON Lines with -o json."""
    try:
        seconds = None if timeout is None else parse_duration(timeout).total_seconds()
    except InvalidInput as e:
        raise InvalidInput(f"--timeout: {e}") from None
    wanted = frozenset(str(parse_status(s, strict=True)) for s in status or ())
    ids = frozenset(tasks or ())
    if since is not None and not since.strip().isdigit():
        raise InvalidInput(f"--since: not a resource_version: {since!r} (a number)")
    until = None if seconds is None else time.monotonic() + seconds

    def accepts(summary: StateSummary) -> bool:
        return (not ids or summary.task_id in ids) and (not wanted or summary.status in wanted)

    def concerns(change: Change) -> bool:
        return (not ids or change.summary.task_id in ids) and (
            not wanted or change.concerns(wanted)
        )

    with c.manager("ro") as m:
        follower = Follower(m.store, default_max_iterations=m.max_iterations)
        listed: list[StateSummary] = []
        if since is not None:
            follower.resume_from(since.strip())
        else:
            listed = m.retry.call(follower.start)
        # On stderr, so that a pipe gets only changes: where the stream starts.
        typer.echo(
            f"remstate: watching {c.store_url} from resourceVersion {follower.resource_version}",
            err=True,
        )
        stop = threading.Event()
        changes = (ch for ch in follower.changes(stop, until=until) if concerns(ch))
        try:
            if c.output is Output.json:
                for change in changes:
                    sys.stdout.write(json.dumps(change.to_dict(), ensure_ascii=False) + "\n")
                    sys.stdout.flush()
                return
            console = Console()
            if not console.is_terminal:
                for change in changes:
                    typer.echo(_line(change))
                    sys.stdout.flush()
                return
            table = LiveTable()
            table.seed([s for s in listed if accepts(s)])
            with Live(table, console=console, refresh_per_second=2, transient=False):
                for change in changes:
                    table.apply(change)
        except KeyboardInterrupt:
            return  # Ctrl-C: the normal way to stop watching
        finally:
            stop.set()
