"""A task's three histories: iterations (POST is an increment), feedback, errors.

Design constraint: each is paged as the library pages it, by an opaque
cursor (``limit``, ``cursor``, ``newest_first``; the answer's
``next_cursor``), never all at once; and each append is idempotent by the
same id as in the library: an increment's ``op_id``, a feedback entry's
``id``, an error record's ``id``. A feedback entry sent again with an id that
is stored already returns the stored entry with 200; a new one is 201.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from ulid import ULID

from remstate.manager import StateManager
from remstate.schema import FeedbackEntry
from remstate.service.deps import (
    API_PREFIX,
    BODY,
    COMMON,
    CONTENDED,
    READ,
    WRITE,
    allow,
    manager_of,
)
from remstate.service.models import ErrorIn, FeedbackIn, Increment, IncrementOut, Resolution
from remstate.service.problems import responses
from remstate.service.routes.tasks import Condition

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX + "/tasks/{task_id}", tags=["history"])
Manager = Annotated[StateManager, Depends(manager_of)]
#: A page's errors: a bad limit or cursor (400), a bad query type (422), no task (404),
#: and a history that promises what it does not hold (500).
PAGE = responses(400, 404, 422, *COMMON)
Limit = Annotated[int, Query(ge=1, le=10_000, description="entries a page holds")]
Cursor = Annotated[str | None, Query(description="next_cursor of the page before")]
NewestFirst = Annotated[bool, Query(description="newest first; a cursor keeps its direction")]


@router.post(
    "/iterations",
    dependencies=[allow(*WRITE)],
    responses=responses(400, 409, 412, *BODY, *COMMON),
)
def increment(task_id: str, body: Increment, m: Manager, version: Condition) -> IncrementOut:
    """Add one iteration (creating the task if needed); the same ``op_id`` again, the same one.

    At the task's limit: 409 ``max-iterations-reached``, and nothing is written.
    """
    op_id = str(ULID()) if body.op_id is None else body.op_id
    with m.expecting(version):
        number = m.increment_iteration(task_id, note=body.note, op_id=op_id)
    return IncrementOut(task_id=task_id, iteration=number, op_id=op_id)


@router.get("/iterations", dependencies=[allow(*READ)], responses=PAGE)
def iterations(
    task_id: str,
    m: Manager,
    limit: Limit = 100,
    cursor: Cursor = None,
    newest_first: NewestFirst = False,
) -> dict[str, Any]:
    """One page of iteration records."""
    page = m.get_iteration_history(task_id, limit=limit, cursor=cursor, newest_first=newest_first)
    records = [r.to_dict() for r in page.records]
    return {"records": records, "next_cursor": page.next_cursor, "total": page.total}


@router.get("/feedback", dependencies=[allow(*READ)], responses=PAGE)
def feedback(
    task_id: str,
    m: Manager,
    limit: Limit = 100,
    cursor: Cursor = None,
    newest_first: NewestFirst = False,
) -> dict[str, Any]:
    """One page of feedback entries."""
    page = m.get_feedback_history(task_id, limit=limit, cursor=cursor, newest_first=newest_first)
    entries = [e.to_dict() for e in page.entries]
    return {"entries": entries, "next_cursor": page.next_cursor, "total": page.total}


@router.post(
    "/feedback",
    status_code=201,
    dependencies=[allow(*WRITE)],
    responses={
        **responses(400, 412, *BODY, *CONTENDED, *COMMON),
        200: {"description": "an entry with this id was stored already: the stored entry"},
    },
)
def append_feedback(
    task_id: str, body: FeedbackIn, m: Manager, response: Response, version: Condition
) -> dict[str, Any]:
    """Append a feedback entry (creating the task if needed): 201, or 200 if its id is stored."""
    entry = FeedbackEntry.new(
        author=body.author,
        severity=body.severity,
        issue_type=body.issue_type,
        description=body.description,
        id=body.id,
        clock=m.clock,
    )
    with m.expecting(version):
        stored = m.append_feedback(task_id, entry)
    # The manager hands back the very entry it appended, and the stored one (a
    # different object, decoded from the store) when the id was there already:
    # identity, not equality, since a re-sent entry may equal the stored one.
    if stored is not entry:
        response.status_code = 200
    return stored.to_dict()


@router.patch(
    "/feedback/{entry_id}",
    dependencies=[allow("update")],
    responses=responses(400, 404, 412, *BODY, *CONTENDED, *COMMON),
)
def resolve_feedback(
    task_id: str, entry_id: str, body: Resolution, m: Manager, version: Condition
) -> dict[str, Any]:
    """Mark a feedback entry resolved (or not); the entry."""
    with m.expecting(version):
        return m.resolve_feedback(task_id, entry_id, resolved=body.resolved).to_dict()


@router.get("/errors", dependencies=[allow(*READ)], responses=PAGE)
def errors(
    task_id: str,
    m: Manager,
    limit: Limit = 100,
    cursor: Cursor = None,
    newest_first: NewestFirst = False,
) -> dict[str, Any]:
    """One page of error records."""
    page = m.get_errors(task_id, limit=limit, cursor=cursor, newest_first=newest_first)
    records = [r.to_dict() for r in page.records]
    return {"records": records, "next_cursor": page.next_cursor, "total": page.total}


@router.post(
    "/errors",
    dependencies=[allow(*WRITE)],
    responses=responses(400, 412, *BODY, *CONTENDED, *COMMON),
)
def record_error(task_id: str, body: ErrorIn, m: Manager, version: Condition) -> dict[str, Any]:
    """Record an error message (creating the task if needed); the same ``id``, the stored one."""
    with m.expecting(version):
        return m.record_error(task_id, body.message, id=body.id).to_dict()
