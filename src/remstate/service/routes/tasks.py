"""The task resource: read (with its ETag), delete (honouring If-Match), status, metadata, policy.

Design constraint: one resource per task, ``/api/v1/tasks/{task_id}``; a
plain update is a ``PUT`` or ``PATCH`` of a sub-resource, an action is a
``POST`` to one (``routes.actions``). The ETag is the state's
resourceVersion, so ``If-Match`` is the store's own compare-and-swap.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Response

from remstate.errors import InvalidInput, PreconditionFailed, StateNotFound
from remstate.manager import StateManager
from remstate.schema.durations import format_duration, parse_duration
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
from remstate.service.models import MetadataPatch, PolicyPatch, StatusIn
from remstate.service.problems import responses

__all__ = ["etag", "if_match", "listing", "router"]

router = APIRouter(prefix=API_PREFIX + "/tasks/{task_id}", tags=["tasks"])
listing = APIRouter(prefix=API_PREFIX, tags=["tasks"])
Manager = Annotated[StateManager, Depends(manager_of)]


def etag(resource_version: str) -> str:
    """The ETag of a state: its resourceVersion, quoted (RFC 9110, a strong tag)."""
    return f'"{resource_version}"'


def if_match(header: str) -> str | None:
    """The resourceVersion an ``If-Match`` names; None for ``*`` (any current state).

    Raises:
        InvalidInput: a weak tag (a state has only strong ones), a list, or no tag.
    """
    value = header.strip()
    if value == "*":
        return None
    if value.startswith("W/"):
        raise InvalidInput("If-Match takes the state's strong ETag, not a weak one")
    if "," in value or len(value) < 3 or value[0] != '"' or value[-1] != '"':
        raise InvalidInput('If-Match takes one ETag, in quotes, as GET returned it: "123"')
    return value[1:-1]


def required_version(
    if_match_header: Annotated[
        str | None,
        Header(
            alias="If-Match",
            description="write only if the state is at this ETag (its resourceVersion); "
            "`*`: only if it exists. Otherwise 412, and nothing is written.",
        ),
    ] = None,
) -> str | None:
    """The version a conditional write requires (``"*"``: any existing state), or None."""
    if if_match_header is None:
        return None
    return if_match(if_match_header) or "*"


#: A write's ``If-Match``, as the version ``StateManager.expecting`` takes.
Condition = Annotated[str | None, Depends(required_version)]


@listing.get(
    "/tasks",
    dependencies=[allow("list")],
    responses=responses(400, 410, 422, *COMMON),
)
def list_tasks(
    m: Manager,
    status: Annotated[str | None, Query(description="only tasks with this status")] = None,
    selector: Annotated[
        str, Query(description="a label selector, as kubectl's -l: team=a,env!=prod")
    ] = "",
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the page before")] = None,
) -> dict[str, Any]:
    """One page of task summaries, from metadata alone; ``next_cursor`` is null on the last."""
    page = m.list_states(status=status, label_selector=selector, limit=limit, cursor=cursor)
    return page.to_dict()


@router.get(
    "",
    dependencies=[allow(*READ)],
    responses={
        **responses(400, 404, *COMMON),
        200: {"description": "the state; its ETag header is its resourceVersion"},
    },
)
def get_task(task_id: str, m: Manager, response: Response) -> dict[str, Any]:
    """The task's state (the newest records of each history; page for the rest)."""
    state, version = m.get_versioned_state(task_id)
    response.headers["ETag"] = etag(version)
    return {**state.to_dict(), "resource_version": version}


@router.delete(
    "",
    status_code=204,
    dependencies=[allow("delete")],
    responses=responses(400, 404, 412, *CONTENDED, *COMMON),
)
def delete_task(
    task_id: str,
    m: Manager,
    if_match_header: Annotated[str | None, Header(alias="If-Match")] = None,
) -> Response:
    """Delete the task's state and its history. With ``If-Match``, only that version."""
    version = None if if_match_header is None else if_match(if_match_header)
    deleted = m.delete_state(task_id, resource_version=version)
    if not deleted:
        if if_match_header is not None:  # "*": any current state, and there is none
            raise PreconditionFailed(task_id, "*", None)
        raise StateNotFound(task_id)
    return Response(status_code=204)


@router.put(
    "/status",
    dependencies=[allow(*WRITE)],
    responses=responses(400, 412, *BODY, *CONTENDED, *COMMON),
)
def set_status(task_id: str, body: StatusIn, m: Manager, version: Condition) -> dict[str, Any]:
    """Set the status (creating the task if needed); the state."""
    with m.expecting(version):
        return m.set_status(task_id, body.status).to_dict()


@router.patch(
    "/metadata",
    dependencies=[allow(*WRITE)],
    responses=responses(400, 412, *BODY, *CONTENDED, *COMMON),
)
def update_metadata(
    task_id: str, body: MetadataPatch, m: Manager, version: Condition
) -> dict[str, Any]:
    """Merge ``set`` into the metadata and drop the ``remove`` keys; the metadata."""
    with m.expecting(version):
        metadata = m.update_metadata(task_id, body.set, remove=body.remove)
    return {"task_id": task_id, "metadata": metadata}


@router.patch(
    "/policy",
    dependencies=[allow(*WRITE)],
    responses=responses(400, 412, *BODY, *CONTENDED, *COMMON),
)
def set_policy(task_id: str, body: PolicyPatch, m: Manager, version: Condition) -> dict[str, Any]:
    """Change the stored policy (creating the task if needed); the policy."""
    ttl = None if body.ttl is None else parse_duration(body.ttl)
    with m.expecting(version):
        policy = m.set_policy(
            task_id, max_iterations=body.max_iterations, ttl=ttl, clear_ttl=body.clear_ttl
        )
    shown = None if policy.ttl is None else format_duration(policy.ttl)
    return {"task_id": task_id, "policy": policy.to_dict(), "ttl": shown}
