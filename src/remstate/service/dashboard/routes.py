"""The dashboard's routes: two pages, the fragments their script refreshes, the static files.

Design constraint: **the same auth as the API.** A page (``/``,
``/tasks/{id}``) is rendered with its data when the request itself is
authorized (loopback without a token, as the API); when a token is needed,
the page is a shell that asks for one, keeps it in the tab
(``sessionStorage``) and fetches the same HTML as a fragment (``/ui/...``)
with ``Authorization: Bearer``. A fragment is authorized as the API route
reading the same thing, and renders only the actions the caller's verbs
allow (``routes.permissions.permitted``); the actions themselves are the
JSON API's routes, so a forged request is refused there. Live updates: the
script refreshes a fragment on each Server-Sent Event of ``/api/v1/events``.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape

from remstate.errors import StateNotFound
from remstate.schema import Status
from remstate.schema.durations import parse_duration
from remstate.service.auth import Verb
from remstate.service.dashboard import pages
from remstate.service.dashboard.pages import feedback_rows, loops_page, task_view
from remstate.service.dashboard.views import (
    SEVERITIES,
    Allowed,
    Cleanup,
    bar,
    cleanup_state,
    relative,
)
from remstate.service.deps import Services, services
from remstate.service.problems import NotAuthenticated, NotAuthorized
from remstate.service.routes.permissions import permitted

__all__ = ["router", "static_files"]

router = APIRouter(include_in_schema=False)

_templates = Environment(
    loader=PackageLoader("remstate.service.dashboard", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
_templates.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, sort_keys=True, default=str)

#: The statuses the filter offers, and a task page's status form.
STATUSES = tuple(str(s) for s in Status)
#: The cleanup's grace period when the service was given none (the manager's default).
DEFAULT_GRACE = timedelta(hours=24)

Cursor = Annotated[str | None, Query()]


def static_files() -> StaticFiles:
    """The script and style sheet, from the package (no asset from anywhere else)."""
    return StaticFiles(packages=[("remstate.service.dashboard", "static")])


def _grace(s: Services) -> timedelta:
    value = s.cleanup_defaults.get("grace", DEFAULT_GRACE)
    if isinstance(value, timedelta):
        return value
    return parse_duration(value)


def _render(name: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    html = _templates.get_template(name).render(severities=SEVERITIES, statuses=STATUSES, **values)
    return HTMLResponse(html, status_code=status_code)


def _authorize(request: Request, verbs: tuple[Verb, ...]) -> None:
    services(request).authorizer.authorize(request, verbs)


def _loops(request: Request, status: str | None, q: str, cursor: str | None) -> dict[str, Any]:
    _authorize(request, ("list", "get"))
    s = services(request)
    page = loops_page(
        s.manager, status=status, search=q, cursor=cursor, grace=_grace(s), limit=pages.PAGE_SIZE
    )
    return {"rows": page.rows, "next_cursor": page.next_cursor}


def _task(request: Request, task_id: str) -> dict[str, Any]:
    s = services(request)
    _authorize(request, ("get",))
    can = Allowed(**permitted(s.authorizer, request))
    view = task_view(s.manager, task_id, snapshots=can.list)
    now = s.manager.clock()
    summary = view.summary
    return {
        "view": view,
        "can": can,
        "now": now,
        "relative": relative,
        "bar": None if summary is None else bar(summary.iteration, summary.max_iterations),
        "cleanup": (
            Cleanup(soft_deleted=False)
            if summary is None
            else cleanup_state(summary, grace=_grace(s), now=now)
        ),
    }


def _shell(name: str, fragment: str, build: Any, *, title: str, **values: Any) -> HTMLResponse:
    """A page with its data when the request is authorized, else the shell that asks a token."""
    try:
        data = build()
    except NotAuthenticated:
        return _render(name, fragment=fragment, needs_token=True, title=title, **values)
    except NotAuthorized as e:
        return _render(name, 403, fragment=fragment, refused=str(e), title=title, **values)
    except StateNotFound as e:
        return _render(name, 404, fragment=fragment, missing=str(e), title=title, **values)
    return _render(name, fragment=fragment, data=data, title=title, **values)


def _query(status: str | None, q: str, cursor: str | None = None) -> str:
    params = {k: v for k, v in (("status", status), ("q", q), ("cursor", cursor)) if v}
    return ("?" + urlencode(params)) if params else ""


@router.get("/", response_class=HTMLResponse)
def loops(
    request: Request,
    status: Annotated[str | None, Query()] = None,
    q: Annotated[str, Query()] = "",
    cursor: Cursor = None,
) -> HTMLResponse:
    """The loops page: every task, a page at a time."""
    status = status or None
    return _shell(
        "loops.html",
        "/ui/loops" + _query(status, q, cursor),
        lambda: _loops(request, status, q, cursor),
        title="Loops",
        status=status,
        q=q,
        cursor=cursor,
        query=_query,
    )


@router.get("/ui/loops", response_class=HTMLResponse)
def loops_fragment(
    request: Request,
    status: Annotated[str | None, Query()] = None,
    q: Annotated[str, Query()] = "",
    cursor: Cursor = None,
) -> HTMLResponse:
    status = status or None
    data = _loops(request, status, q, cursor)
    return _render("_loops.html", data=data, status=status, q=q, query=_query)


@router.get("/tasks/{task_id}", response_class=HTMLResponse)
def task(request: Request, task_id: str) -> HTMLResponse:
    """A task's page: timeline, feedback, errors, metadata, policy, snapshots, actions."""
    return _shell(
        "task.html",
        f"/ui/tasks/{quote(task_id, safe='')}",
        lambda: _task(request, task_id),
        title=task_id,
        task_id=task_id,
    )


@router.get("/ui/tasks/{task_id}", response_class=HTMLResponse)
def task_fragment(request: Request, task_id: str) -> HTMLResponse:
    return _render("_task.html", data=_task(request, task_id), task_id=task_id)


@router.get("/ui/tasks/{task_id}/feedback", response_class=HTMLResponse)
def feedback_fragment(request: Request, task_id: str, cursor: Cursor = None) -> HTMLResponse:
    """The next page of a task's feedback table: its rows, and the button for the page after."""
    s = services(request)
    _authorize(request, ("get",))
    can = Allowed(**permitted(s.authorizer, request))
    rows = feedback_rows(s.manager, task_id, cursor)
    response = _render(
        "_feedback.html",
        rows=rows,
        can=can,
        task_id=task_id,
        now=s.manager.clock(),
        relative=relative,
    )
    response.headers["X-Next-Cursor"] = rows.next_cursor or ""
    return response
