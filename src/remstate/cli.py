"""The ``remstate`` command: the manager's operations for workflow steps and operators.

Output is plain text for people or JSON (``-o json``) for machines. Every
failure prints one readable line on stderr and exits with a documented code,
so a workflow step can branch on it without parsing text:

    0  success
    1  an unexpected error
    2  bad input or usage (an empty --store too); nothing was written
    3  not found: the task has no state (or the embedded store's file does not exist)
    4  max iterations reached; nothing was written
    5  conflicts outlasted the retry policy: other writers kept winning; nothing was written
    6  the store is unavailable (refused, timed out, 5xx) until the timeout ran out;
       for the embedded store, its file cannot be opened
    7  forbidden: RBAC or authentication refused the request, or the embedded
       store's file is read-only for this process; nothing was written
    8  the stored state is corrupt or inconsistent, or written by a newer remstate
       (so is the embedded store's file: not a database, damaged, or laid out by a
       newer one); nothing was written
    9  outcome unknown: a write was sent, its answer never came before the timeout
       ran out, and it may have committed; read the state (or repeat the step with
       the same --id) before doing it again
   10  the server cannot carry the request out until an operator acts (for
       example etcd's database is full); retrying will not help

How long a command waits for an unavailable store: reads (``get``, ``feedback
list``) give up after 10 seconds, writes after 30, unless ``--timeout`` says
otherwise. No single request outlasts that: connect and read timeouts are
capped at what is left of it.

Commands that only read (``get``, ``feedback list``) open the embedded store
read-only and never create it; ``delete`` and ``feedback resolve`` need an
existing file; only the commands that add state create the file and its
directory.
"""

from __future__ import annotations

import enum
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Annotated, Any

import typer

from remstate.errors import (
    CorruptStore,
    Forbidden,
    InvalidInput,
    MaxIterationsReached,
    NotFound,
    OutcomeUnknown,
    RemstateError,
    RetriesExhausted,
    ServerFault,
    StateError,
    StoreError,
    Unavailable,
)
from remstate.manager import ErrorPage, IterationPage, StateManager
from remstate.retry import RetryPolicy
from remstate.schema import FeedbackEntry, TaskState
from remstate.store import parse_store_url

__all__ = ["EXIT_CODES", "app", "main"]

DEFAULT_DB = (
    Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    / "remstate"
    / "state.db"
)


class Exit(enum.IntEnum):
    OK = 0
    ERROR = 1
    INVALID = 2
    NOT_FOUND = 3
    MAX_ITERATIONS = 4
    RETRIES_EXHAUSTED = 5
    UNAVAILABLE = 6
    FORBIDDEN = 7
    CORRUPT = 8
    OUTCOME_UNKNOWN = 9
    SERVER_FAULT = 10


#: Seconds a read, and a write, goes on retrying an unavailable store by default.
#: A read is an operator or a step looking; a write is worth waiting out a restart.
READ_TIMEOUT = 10.0
WRITE_TIMEOUT = 30.0


#: The documented exit codes, most specific error class first.
EXIT_CODES: list[tuple[type[BaseException], Exit]] = [
    (MaxIterationsReached, Exit.MAX_ITERATIONS),
    (InvalidInput, Exit.INVALID),
    (NotFound, Exit.NOT_FOUND),
    (RetriesExhausted, Exit.RETRIES_EXHAUSTED),
    (OutcomeUnknown, Exit.OUTCOME_UNKNOWN),
    (Unavailable, Exit.UNAVAILABLE),
    (ServerFault, Exit.SERVER_FAULT),
    (Forbidden, Exit.FORBIDDEN),
    (StateError, Exit.CORRUPT),
    (CorruptStore, Exit.CORRUPT),
    (StoreError, Exit.ERROR),
]


class Output(enum.StrEnum):
    text = "text"
    json = "json"


app = typer.Typer(
    name="remstate",
    help="Keep the state of agent remediation loops in Kubernetes ConfigMaps.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
feedback_app = typer.Typer(help="Feedback history: add, list and resolve entries.")
app.add_typer(feedback_app, name="feedback")


class _Context:
    def __init__(
        self, store_url: str, output: Output, max_iterations: int, timeout: float | None
    ) -> None:
        self.store_url = store_url
        self.output = output
        self.max_iterations = max_iterations
        self.timeout = timeout

    @contextmanager
    def manager(self, mode: str) -> Iterator[StateManager]:
        """The manager on the store, opened in ``mode`` (for the embedded store).

        Its retries give up after the command's timeout: a read (``ro``) sooner.
        """
        deadline = self.timeout or (READ_TIMEOUT if mode == "ro" else WRITE_TIMEOUT)
        target = parse_store_url(self.store_url)
        if mode == "rwc" and target.backend == "sqlite" and target.mode == "rwc":
            path = Path(target.path)
            # A directory we cannot make is left for the store to report when it
            # opens the file: one translated line and a documented code, not an
            # OSError traceback.
            with suppress(OSError):
                path.parent.mkdir(parents=True, exist_ok=True)
        with StateManager.from_url(
            self.store_url,
            max_iterations=self.max_iterations,
            retry=RetryPolicy(deadline=deadline),
            mode=mode,
        ) as m:
            yield m

    def emit(self, value: Any, text: Callable[[], str]) -> None:
        if self.output is Output.json:
            typer.echo(json.dumps(value, ensure_ascii=False, indent=2))
        else:
            typer.echo(text())


def _store_url(option: str | None) -> str:
    """The store to use: ``--store``, else REMSTATE_STORE, else the default file.

    Raises:
        InvalidInput: the one given is empty (a template with an unset
            variable, say): the default file is no stand-in for it.
    """
    if option is not None:
        if not option.strip():
            raise InvalidInput("--store is empty; give a store URL, or leave the option out")
        return option
    env = os.environ.get("REMSTATE_STORE")
    if env is not None:
        if not env.strip():
            raise InvalidInput("REMSTATE_STORE is empty; give a store URL, or unset it")
        return env
    return f"sqlite://{DEFAULT_DB}"


@app.callback()
def _main(
    ctx: typer.Context,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            "-s",
            help="sqlite:///path/state.db (?mode=ro: read-only) or kubernetes://NAMESPACE "
            "[env REMSTATE_STORE; default: the embedded store in your data directory]",
            show_default=False,
        ),
    ] = None,
    output: Annotated[Output, typer.Option("--output", "-o", help="text or json")] = Output.text,
    max_iterations: Annotated[
        int,
        typer.Option(
            "--max-iterations", envvar="REMSTATE_MAX_ITERATIONS", min=1, help="iteration limit"
        ),
    ] = 10,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            envvar="REMSTATE_TIMEOUT",
            min=0.001,
            metavar="SECONDS",
            help="give up on an unavailable store after this long "
            f"(default: {READ_TIMEOUT:g} for reads, {WRITE_TIMEOUT:g} for writes)",
            show_default=False,
        ),
    ] = None,
) -> None:
    ctx.obj = _Context(_store_url(store), output, max_iterations, timeout)


def _summary(state: TaskState) -> str:
    return (
        f"task {state.task_id}: iteration {state.iteration}, status {state.status}, "
        f"{state.feedback_total} feedback, {state.error_total} errors, "
        f"last update {state.to_dict()['last_update']}"
    )


@app.command()
def get(ctx: typer.Context, task_id: str) -> None:
    """Show a task's state."""
    c: _Context = ctx.obj
    with c.manager("ro") as m:
        state = m.get_state(task_id)
    c.emit(state.to_dict(), lambda: _summary(state))


@app.command()
def increment(
    ctx: typer.Context,
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
    c: _Context = ctx.obj
    with c.manager("rwc") as m:
        number = m.increment_iteration(task_id, note=note, op_id=op_id)
    c.emit({"task_id": task_id, "iteration": number}, lambda: str(number))


@app.command()
def status(ctx: typer.Context, task_id: str, value: str) -> None:
    """Set a task's status (pending, in_progress, awaiting_review, completed, failed, cancelled)."""
    c: _Context = ctx.obj
    with c.manager("rwc") as m:
        state = m.set_status(task_id, value)
    c.emit(state.to_dict(), lambda: _summary(state))


@app.command()
def error(
    ctx: typer.Context,
    task_id: str,
    message: str,
    record_id: Annotated[
        str | None,
        typer.Option("--id", help="an id, so that a retry is a no-op"),
    ] = None,
) -> None:
    """Record an error message for a task (idempotent by --id)."""
    c: _Context = ctx.obj
    with c.manager("rwc") as m:
        record = m.record_error(task_id, message, id=record_id)
    c.emit(record.to_dict(), lambda: "recorded")


def _emit_page(
    c: _Context,
    records: list[dict[str, Any]],
    page: IterationPage | ErrorPage,
    line: Callable[[dict[str, Any]], str],
) -> None:
    def text() -> str:
        lines = [line(r) for r in records]
        if page.next_cursor:
            lines.append(f"next page: --cursor {page.next_cursor}")
        return "\n".join(lines)

    c.emit({"records": records, "next_cursor": page.next_cursor, "total": page.total}, text)


@app.command()
def iterations(
    ctx: typer.Context,
    task_id: str,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    cursor: Annotated[str | None, typer.Option(help="from a previous page")] = None,
    newest_first: Annotated[bool, typer.Option("--newest-first", help="newest first")] = False,
) -> None:
    """List iteration records, oldest first (or newest first), one page at a time."""
    c: _Context = ctx.obj
    with c.manager("ro") as m:
        page = m.get_iteration_history(
            task_id, limit=limit, cursor=cursor, newest_first=newest_first
        )
    records = [r.to_dict() for r in page.records]
    _emit_page(
        c,
        records,
        page,
        lambda r: f"{r['iteration']} {r['started_at']} {r.get('note', '')}".rstrip(),
    )


@app.command()
def errors(
    ctx: typer.Context,
    task_id: str,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    cursor: Annotated[str | None, typer.Option(help="from a previous page")] = None,
    newest_first: Annotated[bool, typer.Option("--newest-first", help="newest first")] = False,
) -> None:
    """List error records, oldest first (or newest first), one page at a time."""
    c: _Context = ctx.obj
    with c.manager("ro") as m:
        page = m.get_errors(task_id, limit=limit, cursor=cursor, newest_first=newest_first)
    records = [r.to_dict() for r in page.records]
    _emit_page(c, records, page, lambda r: f"{r.get('timestamp', '-')} {r['message']}")


@app.command()
def delete(ctx: typer.Context, task_id: str) -> None:
    """Delete a task's state and its history; exit 3 if it had none."""
    c: _Context = ctx.obj
    with c.manager("rw") as m:
        if not m.delete_state(task_id):
            raise NotFound(f"no state for task {task_id!r}")
    c.emit({"task_id": task_id, "deleted": True}, lambda: "deleted")


@feedback_app.command("add")
def feedback_add(  # noqa: PLR0917 - typer maps options to parameters
    ctx: typer.Context,
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
    c: _Context = ctx.obj
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
def feedback_list(
    ctx: typer.Context,
    task_id: str,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    cursor: Annotated[str | None, typer.Option(help="from a previous page")] = None,
    newest_first: Annotated[bool, typer.Option("--newest-first", help="newest first")] = False,
) -> None:
    """List feedback, oldest first (or newest first), one page at a time."""
    c: _Context = ctx.obj
    with c.manager("ro") as m:
        page = m.get_feedback_history(
            task_id, limit=limit, cursor=cursor, newest_first=newest_first
        )

    def text() -> str:
        lines = [_feedback_line(e) for e in page.entries]
        if page.next_cursor:
            lines.append(f"next page: --cursor {page.next_cursor}")
        return "\n".join(lines)

    c.emit(
        {
            "entries": [e.to_dict() for e in page.entries],
            "next_cursor": page.next_cursor,
            "total": page.total,
        },
        text,
    )


def _feedback_line(entry: FeedbackEntry) -> str:
    mark = "x" if entry.resolved else " "
    kind = f"{entry.severity}/{entry.issue_type}"
    return f"[{mark}] {entry.id} {kind} {entry.author}: {entry.description}"


@feedback_app.command("resolve")
def feedback_resolve(ctx: typer.Context, task_id: str, entry_id: str) -> None:
    """Mark a feedback entry resolved."""
    c: _Context = ctx.obj
    with c.manager("rw") as m:
        entry = m.resolve_feedback(task_id, entry_id)
    c.emit(entry.to_dict(), lambda: _feedback_line(entry))


@app.command()
def demo(ctx: typer.Context, task_id: str = "demo") -> None:
    """Run one small remediation loop on the store and print its state."""
    c: _Context = ctx.obj
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


def _describe(exc: RemstateError) -> str:
    """The error's one line; an outage says first that the store is unavailable."""
    if isinstance(exc, Unavailable) and not isinstance(exc, OutcomeUnknown):
        return f"the store is unavailable: {exc}"
    return str(exc)


def exit_code(exc: BaseException) -> Exit:
    """The documented exit code for an error."""
    for kind, code in EXIT_CODES:
        if isinstance(exc, kind):
            return code
    return Exit.ERROR


#: The group's options that take a value, accepted after the command too.
_GLOBAL_OPTIONS = frozenset({"-o", "--output", "-s", "--store", "--max-iterations", "--timeout"})


def _subcommand_value_options() -> frozenset[str]:
    """Every subcommand option that takes a value: its value is never moved."""

    # Typer carries its own copy of click, so walk the command tree by shape.
    def walk(command: Any) -> set[str]:
        names = {
            name
            for param in command.params
            if getattr(param, "is_flag", True) is False
            for name in param.opts
        }
        for sub in getattr(command, "commands", {}).values():
            names |= walk(sub)
        return names

    root = typer.main.get_command(app)
    return frozenset(walk(root) - {n for p in root.params for n in p.opts})


def hoist_global_options(argv: list[str]) -> list[str]:
    """Move the group's options to the front, wherever they were given.

    Click (under typer) only takes a group's options before the subcommand,
    but ``remstate increment 42 -o json`` is what a workflow author writes.
    No option of a subcommand shares these names, and the value of a
    subcommand's option (``--note -o``) stays where it is.
    """
    keep_value = _subcommand_value_options()
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        if arg.startswith("--") and arg.split("=", 1)[0] in _GLOBAL_OPTIONS and "=" in arg:
            front.append(arg)
            i += 1
        elif arg in _GLOBAL_OPTIONS and i + 1 < len(argv):
            front.extend(argv[i : i + 2])
            i += 2
        elif arg in keep_value:
            rest.extend(argv[i : i + 2])
            i += 2
        else:
            rest.append(arg)
            i += 1
    return front + rest


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (errors are one line on stderr)."""
    args = hoist_global_options(sys.argv[1:] if argv is None else list(argv))
    try:
        returned = app(args=args, prog_name="remstate", standalone_mode=False)
        if isinstance(returned, int) and returned:
            return returned  # click returns a typer.Exit's code when not standalone
    except RemstateError as e:
        typer.echo(f"remstate: {_describe(e)}", err=True)
        return exit_code(e)
    except typer.Abort:
        typer.echo("remstate: aborted", err=True)
        return Exit.ERROR
    except typer.TyperException as e:
        # Usage errors (a missing argument, an unknown option, a bad value).
        # With no arguments at all, rich has already printed the help and the
        # message is empty: still say what went wrong, on one line.
        message = e.format_message() or "missing command; see remstate --help"
        typer.echo(f"remstate: {message}", err=True)
        return Exit.INVALID
    except Exception as e:  # noqa: BLE001 - a bug of ours still gets one readable line
        typer.echo(f"remstate: unexpected error: {type(e).__name__}: {e}", err=True)
        return Exit.ERROR
    return Exit.OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
