"""The recovery commands: ``validate``, ``recover``, ``snapshots`` and ``snapshots restore``.

``validate`` exits 11 when it found problems (0 when the state is clean, 8
when a newer remstate wrote it), so that a workflow step can branch on it
without parsing the report. ``snapshots`` takes its words as arguments:
``snapshots ID`` lists, ``snapshots restore ID NAME`` restores (a click group
with an ID argument would read the word ``restore`` as an ID).
"""

from __future__ import annotations

from typing import Annotated

import typer

from remstate.cli.commands import app
from remstate.cli.exits import Exit
from remstate.cli.options import Session, global_options
from remstate.errors import InvalidInput
from remstate.recovery import Finding, RecoveryReport, ValidationReport

__all__: list[str] = []


def _finding(p: Finding) -> str:
    mark = "repairable" if p.repairable else "not repairable"
    return f"  {p.kind} {p.key}: {p.detail} ({mark})"


def _validation_text(report: ValidationReport) -> str:
    head = f"task {report.task_id} ({report.name}, resourceVersion {report.resource_version})"
    if not report.supported:
        return f"{head}: written by a newer remstate; not checked, never repaired"
    if report.ok:
        return f"{head}: no problems"
    return "\n".join(
        [f"{head}: {len(report.problems)} problem(s)", *map(_finding, report.problems)]
    )


def _recovery_text(report: RecoveryReport) -> str:
    if not report.written:
        return _validation_text(report.validation) + "\nnothing written"
    lines = [
        f"task {report.validation.task_id}: repaired; the original is in {report.snapshot}",
        *(f"  repaired {r.kind} {r.key}: {r.detail}" for r in report.repaired),
        *(f"  not kept {x.key}: {x.detail}" for x in report.lost),
        *(f"  remaining{_finding(p)}" for p in report.remaining),
    ]
    return "\n".join(lines)


@app.command()
@global_options
def validate(c: Session, task_id: str) -> None:
    """Check a task's state and its history segments; exit 11 if there are problems."""
    with c.manager("ro") as m:
        report = m.validate_state(task_id)
    c.emit(report.to_dict(), lambda: _validation_text(report))
    if not report.supported:
        raise typer.Exit(Exit.CORRUPT)
    if not report.ok:
        raise typer.Exit(Exit.PROBLEMS)


@app.command()
@global_options
def recover(c: Session, task_id: str) -> None:
    """Snapshot, then repair a task's state; print what was repaired and what was not kept."""
    with c.manager("rw") as m:
        report = m.recover_state(task_id)
    c.emit(report.to_dict(), lambda: _recovery_text(report))
    if not report.validation.supported:
        raise typer.Exit(Exit.CORRUPT)
    if report.remaining:
        raise typer.Exit(Exit.PROBLEMS)


@app.command()
@global_options
def snapshots(
    c: Session,
    words: Annotated[list[str], typer.Argument(metavar="ID | restore ID NAME")],
) -> None:
    """List a task's snapshots, newest first; or restore one (snapshots restore ID NAME)."""
    if len(words) == 1:
        with c.manager("ro") as m:
            listed = m.list_snapshots(words[0])
        rows = [s.to_dict() for s in listed]
        c.emit(
            {"task_id": words[0], "snapshots": rows},
            lambda: (
                "\n".join(
                    f"{r['name']}  {r['taken_at'] or '-'}  {r['reason']}  "
                    f"(of resourceVersion {r['of_resource_version']})"
                    for r in rows
                )
                or "no snapshots"
            ),
        )
        return
    if len(words) == 3 and words[0] == "restore":
        task_id, name = words[1], words[2]
        with c.manager("rw") as m:
            restored = m.restore_snapshot(task_id, name)
        c.emit(
            restored.to_dict(),
            lambda: f"restored {name}; the state before is in snapshot {restored.snapshot}",
        )
        return
    raise InvalidInput("usage: remstate snapshots ID, or remstate snapshots restore ID NAME")
