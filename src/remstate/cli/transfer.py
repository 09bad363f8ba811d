"""``remstate export`` and ``remstate import``: whole states, history included, as JSON Lines.

Registers on ``remstate.cli.commands.app`` when imported (``remstate.cli``
imports it). The line format is ``remstate.schema.export`` (version 1): one
JSON object a task, every record of its history in it.

``export [IDS...]`` writes every state (or the ones named) to stdout, soft-
deleted ones included, one line each, as it reads them: one task's history
in memory at a time. Every state is listed from the heads' metadata, a page
at a time. A task named that has no state, or one that cannot be read, is
one line on stderr (``remstate: task ID: ...``); the others are still
exported, and the exit code is that of the first failure.

``import FILE [--overwrite]`` (``-`` reads stdin) writes each line's state:

- the same state already there: skipped, nothing written;
- a different one: left as it is and reported (``differs``), unless
  ``--overwrite``: then a snapshot of it is taken, and it is replaced;
- a line that is not a valid export (bad JSON, a field missing or of the
  wrong type, a newer version, a duplicate id, too large): one line on stderr
  with its line number (``remstate: line 7: ...``), nothing written for it,
  and the import goes on.

It ends with the counts (created, skipped, overwritten, differs, invalid) on
stdout, as text or ``-o json``. Exit codes: 0 when every line was created,
skipped or overwritten; 2 when a line was invalid; else 5 when a state
differed and was left alone. A store failure (6, 7...) stops the import,
after the counts so far: run it again, it is idempotent.

On a terminal, a progress bar on stderr follows the tasks; piped, there is none.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from remstate.cli.commands import app
from remstate.cli.exits import Exit, describe, exit_code
from remstate.cli.options import Session, global_options
from remstate.errors import InvalidInput, RemstateError, StateNotFound
from remstate.manager import ExportedState, ImportOutcome, StateManager
from remstate.schema import parse_export_line

__all__ = ["export", "import_"]

#: Tasks listed per request when exporting every state.
LIST_PAGE = 100

Say = Callable[[str], None]
Advance = Callable[[int | None], None]


@contextmanager
def _progress(what: str, total: int | None) -> Iterator[tuple[Say, Advance]]:
    """A line printer for stderr and a progress step; a bar only when stderr is a terminal."""
    console = Console(stderr=True, highlight=False)
    if not console.is_terminal:

        def say(text: str) -> None:
            typer.echo(text, err=True)

        yield say, lambda _total: None
        return
    columns = (TextColumn(what), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(what, total=total)

        def advance(new_total: int | None) -> None:
            bar.update(task, advance=1, total=new_total if new_total is not None else total)

        yield (lambda text: bar.console.print(text, markup=False, soft_wrap=True)), advance


def _task_ids(m: StateManager) -> Iterator[str]:
    """Every task's id, from the heads' metadata, a page at a time."""
    cursor: str | None = None
    while True:
        page = m.list_states(limit=LIST_PAGE, cursor=cursor)
        for summary in page.summaries:
            yield summary.task_id
        cursor = page.next_cursor
        if cursor is None:
            return


@app.command()
@global_options
def export(c: Session, task_ids: Annotated[list[str] | None, typer.Argument()] = None) -> None:
    """Write every state (or those named), history included, as JSON Lines on stdout."""
    failures: list[RemstateError] = []
    named = list(task_ids or ())
    with c.manager("ro") as m, _progress("exporting", len(named) or None) as (say, advance):
        for task_id in named or _task_ids(m):
            try:
                exported = m.export_state(task_id)
            except StateNotFound as e:
                if not named:
                    continue  # deleted since it was listed
                failures.append(e)
                say(f"remstate: task {task_id}: no state")
                continue
            except RemstateError as e:
                if exit_code(e) in (Exit.UNAVAILABLE, Exit.FORBIDDEN, Exit.OUTCOME_UNKNOWN):
                    raise  # the store, not this task: stop
                failures.append(e)
                say(f"remstate: task {task_id}: {describe(e)}")
                continue
            typer.echo(exported.to_line())
            advance(None)
    if failures:
        raise typer.Exit(exit_code(failures[0]))


def _lines(path: str) -> tuple[IO[str], int | None]:
    """The file to read (stdin for ``-``) and its number of lines, when it can be counted."""
    if path == "-":
        return sys.stdin, None
    try:
        with open(path, encoding="utf-8") as f:
            total = sum(1 for line in f if line.strip())
        return open(path, encoding="utf-8"), total
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInput(f"cannot read {path}: {e}") from None


@app.command("import")
@global_options
def import_(
    c: Session,
    path: Annotated[
        str, typer.Argument(metavar="FILE", help="an export (JSON Lines); - for stdin")
    ],
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="replace a different state (after a snapshot of it)"),
    ] = False,
) -> None:
    """Write the states of an export into the store; idempotent (exit 2 on invalid lines)."""
    source, total = _lines(path)
    counts: Counter[str] = Counter()
    try:
        with c.manager("rwc") as m, _progress("importing", total) as (say, advance):
            try:
                _import_lines(m, source, overwrite=overwrite, counts=counts, say=say, step=advance)
            finally:
                _report(c, counts)
    finally:
        if source is not sys.stdin:
            source.close()
    if counts["invalid"]:
        raise typer.Exit(Exit.INVALID)
    if counts[ImportOutcome.DIFFERS]:
        raise typer.Exit(Exit.RETRIES_EXHAUSTED)


def _import_lines(
    m: StateManager,
    source: IO[str],
    *,
    overwrite: bool,
    counts: Counter[str],
    say: Say,
    step: Advance,
) -> None:
    """Import each line; a bad one is said and counted, a store failure stops."""
    for number, line in enumerate(source, start=1):
        if not line.strip():
            continue
        try:
            exported: ExportedState = parse_export_line(line)
            outcome = m.import_state(exported, overwrite=overwrite)
        except InvalidInput as e:
            counts["invalid"] += 1
            say(f"remstate: line {number}: {describe(e)}")
        else:
            counts[outcome] += 1
            if outcome is ImportOutcome.DIFFERS:
                say(
                    f"remstate: line {number}: task {exported.task_id} differs from the one "
                    "in the store; left as it is (--overwrite replaces it)"
                )
        step(None)


def _report(c: Session, counts: Counter[str]) -> None:
    keys = [str(o) for o in ImportOutcome if o is not ImportOutcome.DIFFERS]
    keys += [ImportOutcome.DIFFERS, "invalid"]
    value = {key: counts[key] for key in keys}
    c.emit(value, lambda: ", ".join(f"{n} {key}" for key, n in value.items()))
