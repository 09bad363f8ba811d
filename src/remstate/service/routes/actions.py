"""Recovery and restore, as ``POST`` sub-resources of a task; validation and snapshots to read.

Design constraint: actions that are not plain updates are ``POST``s to a
sub-resource (DESIGN.md, "The HTTP API"); what only reads is a ``GET``
(validation writes nothing). Each answers with the library's report.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from remstate.manager import StateManager
from remstate.service.auth import Verb
from remstate.service.deps import API_PREFIX, COMMON, READ, allow, manager_of
from remstate.service.problems import responses

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX + "/tasks/{task_id}", tags=["recovery"])
Manager = Annotated[StateManager, Depends(manager_of)]


@router.get("/validation", dependencies=[allow(*READ)], responses=responses(400, 404, *COMMON))
def validate(task_id: str, m: Manager) -> dict[str, Any]:
    """Every problem of the stored state and its segments; writes nothing."""
    return m.validate_state(task_id).to_dict()


# Recover and restore take a snapshot (create), may prune the oldest (delete),
# and a restore may create the head again: they need all three verbs.
SNAPSHOTTING: tuple[Verb, ...] = ("create", "update", "delete")


@router.post(
    "/recover", dependencies=[allow(*SNAPSHOTTING)], responses=responses(400, 404, *COMMON)
)
def recover(task_id: str, m: Manager) -> dict[str, Any]:
    """Snapshot, then repair the state; the report (what was kept, what only the snapshot has)."""
    return m.recover_state(task_id).to_dict()


@router.get("/snapshots", dependencies=[allow("list")], responses=responses(400, *COMMON))
def snapshots(task_id: str, m: Manager) -> dict[str, Any]:
    """The task's snapshots, newest first."""
    return {"task_id": task_id, "snapshots": [s.to_dict() for s in m.list_snapshots(task_id)]}


@router.post(
    "/snapshots/{name}/restore",
    dependencies=[allow(*SNAPSHOTTING)],
    responses=responses(400, 404, *COMMON),
)
def restore_snapshot(task_id: str, name: str, m: Manager) -> dict[str, Any]:
    """Put a snapshot back as the task's state (a snapshot of the state is taken first)."""
    return m.restore_snapshot(task_id, name).to_dict()


@router.post("/restore", dependencies=[allow("update")], responses=responses(400, 404, *COMMON))
def restore(task_id: str, m: Manager) -> dict[str, Any]:
    """Undo a soft delete of the cleanup: the task is active again.

    ``restored`` is false when it was not soft-deleted (nothing to undo).
    """
    return {"task_id": task_id, "restored": m.restore_state(task_id)}
