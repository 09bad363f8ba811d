"""``GET /api/v1/events``: the tasks' changes as Server-Sent Events, from the process's one watch.

Design constraint: every open stream shares the process's one store watch
(``remstate.service.events.EventHub``); a stream costs a queue, not a
request to the API server. The route is authorized as a read of the list
(``list`` on configmaps). A browser's ``EventSource`` cannot send an
``Authorization`` header, so this route alone also takes the bearer token as
``?access_token=``: ``AccessTokenQuery`` moves it into the header before
anything reads the request, and takes it out of the query string, so that no
access log ever holds it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Final
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from remstate.errors import InvalidInput
from remstate.schema.values import parse_status
from remstate.service.deps import API_PREFIX, COMMON, allow
from remstate.service.events import EventHub, Subscription, position_of
from remstate.service.problems import responses
from remstate.watching import Change

__all__ = ["EVENTS_PATH", "MEDIA_TYPE", "AccessTokenQuery", "event_stream", "hub_of", "router"]

router = APIRouter(prefix=API_PREFIX, tags=["events"])

#: The route's path, where ``?access_token=`` is accepted.
EVENTS_PATH: Final = API_PREFIX + "/events"
MEDIA_TYPE: Final = "text/event-stream"
#: The most ``task`` filters one stream may give.
MAX_TASKS: Final = 100
#: How long a browser waits before it reconnects (the ``retry`` field), in ms.
RECONNECT_MS: Final = 2000

_DESCRIPTION = """\
The tasks' changes as they happen, as Server-Sent Events, until the client
closes the stream (or the service stops). Every stream of one process shares
its one watch of the store.

Each change is an event `added`, `modified` or `deleted` whose `id` is the
resourceVersion after it and whose `data` is one line of JSON:
`{"type": "MODIFIED", "resource_version": "812", "relisted": false,
"previous_status": "in_progress", "task": {...}}`, the task as `GET
/api/v1/tasks` lists it (task_id, status, iteration, max_iterations,
last_update, lifecycle, resource_version...). `?status=` selects the changes
of tasks that have the status, or had it until the change (so a stream sees
a task leave it).
After 410 Gone the service lists again and sends what changed meanwhile
with `relisted: true` and no `id`.

`ready` (data `{"resource_version", "replayed"}`) comes once, when every later
change will reach the stream: a client that shows state reads it after `ready`.
`resync` (data `{"reason", "resource_version"}`) says changes were lost for
this stream (`too-old`: it resumed from a position the service no longer
holds; `slow`: it read too slowly, and the stream ends): read the state again.
A comment line (`: heartbeat`) comes every 15 s on an idle stream.

Resume with the `Last-Event-ID` header (an `EventSource` sends it itself
when it reconnects) or `?since=`; the header wins. The bearer token may be
given as `?access_token=` (for `EventSource`, which cannot send headers); it
is taken out of the URL before anything logs it."""


class AccessTokenQuery:
    """Moves ``?access_token=`` into the ``Authorization`` header on the events route;
    strips it from every query string, so that it is never logged.

    Pure ASGI, and in place: uvicorn's access log reads the same scope after
    the app has run. A header given too wins over the query.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and b"access_token" in scope.get("query_string", b""):
            pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
            tokens = [value for key, value in pairs if key == "access_token"]
            scope["query_string"] = urlencode(
                [(k, v) for k, v in pairs if k != "access_token"]
            ).encode("latin-1")
            headers = list(scope.get("headers", []))
            given = any(name.lower() == b"authorization" for name, _ in headers)
            if scope.get("path") == EVENTS_PATH and tokens and tokens[-1] and not given:
                headers.append((b"authorization", f"Bearer {tokens[-1]}".encode("latin-1")))
                scope["headers"] = headers
        await self.app(scope, receive, send)


def hub_of(request: Request) -> EventHub:
    hub = request.app.state.events
    assert isinstance(hub, EventHub)
    return hub


def _filter(tasks: list[str], statuses: list[str]) -> tuple[frozenset[str], frozenset[str]]:
    if len(tasks) > MAX_TASKS:
        raise InvalidInput(f"at most {MAX_TASKS} task filters, not {len(tasks)}")
    wanted = frozenset(str(parse_status(s, strict=True)) for s in statuses)
    return frozenset(tasks), wanted


def _since(last_event_id: str | None, since: str | None) -> str | None:
    given = last_event_id if last_event_id is not None and last_event_id.strip() else since
    if given is None:
        return None
    if position_of(given) is None:
        raise InvalidInput(f"not a resourceVersion to resume from: {given!r} (a number)")
    return given.strip()


async def event_stream(sub: Subscription, heartbeat: float) -> AsyncIterator[str]:
    """The response body of one subscription: the reconnect delay, its events, heartbeats."""
    try:
        yield f"retry: {RECONNECT_MS}\n\n"
        while True:
            try:
                event = await sub.get(heartbeat)
            except TimeoutError:
                yield ": heartbeat\n\n"
                continue
            if event is None:
                return
            yield event.encode()
    finally:
        sub.close()


@router.get(
    "/events",
    dependencies=[allow("list")],
    response_class=StreamingResponse,
    description=_DESCRIPTION,
    responses={
        **responses(400, *COMMON),
        200: {
            "description": "an endless stream of Server-Sent Events",
            "content": {MEDIA_TYPE: {"schema": {"type": "string"}}},
        },
    },
)
async def events(  # noqa: PLR0917 - FastAPI maps the query to parameters
    request: Request,
    task: Annotated[list[str], Query(description="only these tasks (repeat it)")] = [],  # noqa: B006 - FastAPI's form for a list parameter
    status: Annotated[list[str], Query(description="only tasks with this status (repeat it)")] = [],  # noqa: B006
    since: Annotated[
        str | None, Query(description="resume after this resourceVersion (an event's id)")
    ] = None,
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", description="as since; wins over it")
    ] = None,
    access_token: Annotated[
        str | None,
        Query(description="the bearer token, for clients that cannot send headers (EventSource)"),
    ] = None,
) -> StreamingResponse:
    """The tasks' changes, as Server-Sent Events."""
    del access_token  # read (and removed from the URL) by AccessTokenQuery, before this
    tasks, statuses = _filter(task, status)
    resume = _since(last_event_id, since)
    hub = hub_of(request)
    await hub.start()

    def accepts(change: Change) -> bool:
        return (not tasks or change.summary.task_id in tasks) and (
            not statuses or change.concerns(statuses)
        )

    sub = hub.subscribe(accepts=accepts, since=resume)
    return StreamingResponse(
        event_stream(sub, hub.heartbeat),
        media_type=MEDIA_TYPE,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
