"""``remstate policy ID``: show or change a task's stored policy (iteration limit, ttl).

Registers on ``remstate.cli.commands.app`` when imported (``remstate.cli``
imports it). After the command, ``--max-iterations`` is the limit to store;
before it, it stays the global option (the default a task gets when this
command creates it, as for every command).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from remstate.cli.commands import app
from remstate.cli.options import Session, global_options_but
from remstate.errors import InvalidInput
from remstate.schema import MAX_ITERATIONS_LIMIT, Policy
from remstate.schema.durations import format_duration, parse_duration

__all__ = ["policy"]


def _shown(task_id: str, policy: Policy, default_limit: int) -> tuple[dict[str, Any], str]:
    """The policy as JSON and as one line for people."""
    text = f"task {task_id}: {policy.describe()}"
    if policy.max_iterations is None:
        text += f" (no limit stored: writers use their own default, {default_limit} here)"
    value: dict[str, Any] = {"task_id": task_id, "policy": policy.to_dict()}
    value["ttl"] = None if policy.ttl is None else format_duration(policy.ttl)
    return value, text


@app.command()
@global_options_but("max_iterations")
def policy(
    c: Session,
    task_id: str,
    max_iterations: Annotated[
        int | None,
        typer.Option(
            "--max-iterations",
            min=1,
            max=MAX_ITERATIONS_LIMIT,
            help="the iteration limit every writer of this task enforces",
            show_default=False,
        ),
    ] = None,
    ttl: Annotated[
        str | None,
        typer.Option(
            help="how long the state is kept after its last update: 14d, 36h, 90m...",
            show_default=False,
        ),
    ] = None,
    clear_ttl: Annotated[
        bool, typer.Option("--clear-ttl", help="back to the cleanup's default ttl")
    ] = False,
) -> None:
    """Show a task's stored policy, or change it (creating the task if needed)."""
    if max_iterations is None and ttl is None and not clear_ttl:
        with c.manager("ro") as m:
            stored = m.get_state(task_id).policy
            default_limit = m.max_iterations
    else:
        try:
            duration = None if ttl is None else parse_duration(ttl)
        except InvalidInput as e:
            raise InvalidInput(f"--ttl: {e}") from None
        if duration is not None and clear_ttl:
            raise InvalidInput("give --ttl or --clear-ttl, not both")
        with c.manager("rwc") as m:
            stored = m.set_policy(
                task_id, max_iterations=max_iterations, ttl=duration, clear_ttl=clear_ttl
            )
            default_limit = m.max_iterations
    value, text = _shown(task_id, stored, default_limit)
    c.emit(value, lambda: text)
