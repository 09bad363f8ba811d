"""``remstate cleanup`` and ``remstate restore``: TTL cleanup for operators and cron jobs.

The report prints as a table (rich) for people, or as JSON (``-o json``)
for machines. On a terminal a progress bar on stderr follows the scan, page
by page; piped, there is none, so a log or a JSON consumer sees only the
report. A bad duration (``--ttl 7x``) is one line and exit 2, before the
store is opened.

Exit codes are those of ``remstate.cli``: 0 when the run completed, even if
some states could not be handled (the report counts them under ``errors``);
6 when the store cannot be scanned, and so on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from remstate.cleanup import DEFAULT_PAGE_SIZE, DEFAULT_RATE, CleanupReport
from remstate.cleanup import Progress as OnProgress
from remstate.cli.commands import app
from remstate.cli.options import Output, Session, global_options
from remstate.errors import InvalidInput
from remstate.schema.durations import duration_argument, format_duration

__all__ = ["cleanup", "restore"]


def _duration(value: str, option: str) -> str:
    """``value`` if it is a duration; else InvalidInput naming the option (exit 2)."""
    try:
        duration_argument(value, option)
    except InvalidInput as e:
        raise InvalidInput(f"{option}: {e}") from None
    return value


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[OnProgress | None]:
    """A progress callback drawing a bar on stderr, when stderr is a terminal."""
    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield None
        return
    columns = (TextColumn("scanning"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("scan", total=None)

        def update(scanned: int, total: int | None) -> None:
            bar.update(task, completed=scanned, total=total if total is not None else scanned)

        yield update


def _table(report: CleanupReport) -> Table:
    """The counts, then each state named, for people."""
    mode = "dry run: nothing written; " if report.dry_run else ""
    title = (
        f"cleanup ({mode}ttl {format_duration(report.ttl)}, "
        f"grace {format_duration(report.grace)}{', force' if report.force else ''})"
    )
    table = Table(title=title, title_justify="left")
    for column in ("action", "task", "object", "reason"):
        table.add_column(column, overflow="fold")
    for item in report.items:
        table.add_row(item.action, item.task_id, item.name, item.reason)
    counts = (
        f"{report.scanned} scanned, {report.soft_deleted} soft-deleted, "
        f"{report.restored} restored, {report.purged} purged, "
        f"{report.skipped_active} skipped (active), {report.skipped_touched} skipped (touched), "
        f"{report.in_grace} in grace, {report.orphans_removed} orphans removed, "
        f"{report.errors} errors"
    )
    if report.limited:
        counts += "; stopped at --limit, run again for the rest"
    table.caption = counts
    table.caption_justify = "left"
    return table


@app.command()
@global_options
def cleanup(  # noqa: PLR0917 - typer maps options to parameters
    c: Session,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="say what would be done; write nothing")
    ] = False,
    ttl: Annotated[
        str, typer.Option(help="soft-delete states not updated for this long (7d, 36h, 3600)")
    ] = "7d",
    grace: Annotated[str, typer.Option(help="purge soft-deleted states after this long")] = "24h",
    force: Annotated[
        bool, typer.Option("--force", help="also clean tasks in_progress or awaiting_review")
    ] = False,
    limit: Annotated[
        int | None, typer.Option(min=1, help="at most this many soft deletes, restores, purges")
    ] = None,
    keep_snapshot: Annotated[
        bool, typer.Option("--keep-snapshot", help="snapshot each state before its purge")
    ] = False,
    orphans: Annotated[
        bool,
        typer.Option(
            "--orphans/--no-orphans",
            help="also remove orphan segments and snapshots (lists all of their metadata)",
        ),
    ] = True,
    page_size: Annotated[
        int, typer.Option(min=1, max=10_000, help="states listed per request")
    ] = DEFAULT_PAGE_SIZE,
    rate: Annotated[
        float, typer.Option(min=0.1, metavar="PER_SECOND", help="requests per second at most")
    ] = DEFAULT_RATE,
) -> None:
    """Soft-delete states older than --ttl; purge them --grace later."""
    ttl = _duration(ttl, "--ttl")
    grace = _duration(grace, "--grace")
    # A dry run only reads: the embedded store is opened read-only, never created.
    with (
        c.manager("ro" if dry_run else "rw") as m,
        _progress_bar(c.output is Output.text) as progress,
    ):
        report = m.cleanup_old_states(
            ttl=ttl,
            grace=grace,
            dry_run=dry_run,
            force=force,
            limit=limit,
            keep_snapshot=keep_snapshot,
            orphans=orphans,
            page_size=page_size,
            requests_per_second=rate,
            progress=progress,
        )
    if c.output is Output.json:
        c.emit(report.to_dict(), str)
    else:
        Console(soft_wrap=False).print(_table(report))


@app.command()
@global_options
def restore(c: Session, task_id: str) -> None:
    """Undo a soft delete: the task is active again (exit 3 if it has no state).

    Its data is unchanged, so the next cleanup soft-deletes it again unless it
    is written to or given a longer ttl (remstate policy ID --ttl 30d).
    """
    with c.manager("rw") as m:
        restored = m.restore_state(task_id)
    c.emit(
        {"task_id": task_id, "restored": restored},
        lambda: "restored" if restored else f"task {task_id} is not soft-deleted: nothing to do",
    )
