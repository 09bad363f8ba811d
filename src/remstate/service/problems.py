"""Errors over HTTP: ``application/problem+json`` (RFC 9457), one stable ``type`` per class.

Design constraint: the error tree of ``remstate.errors`` (and the service's
own refusals: authentication, authorization, leadership) maps to HTTP in this
one place, as the CLI maps it to exit codes in ``remstate.cli.exits``. Every
class gets a status and a ``type`` URI that never changes, so a client
branches on ``type``, not on a message. A test walks the error tree to hold
this. Nothing is written on any error: the manager raises before it writes,
and so do the service's checks (authorization, leadership, ``If-Match``).
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException

from remstate.errors import (
    AlreadyExists,
    Conflict,
    CorruptState,
    CorruptStore,
    Forbidden,
    Gone,
    InvalidInput,
    InvalidObject,
    MaxIterationsReached,
    NotFound,
    OutcomeUnknown,
    PreconditionFailed,
    RemstateError,
    RetriesExhausted,
    ServerFault,
    StateError,
    StoreError,
    Unavailable,
)

__all__ = [
    "MEDIA_TYPE",
    "PROBLEMS",
    "TYPE_BASE",
    "NotAuthenticated",
    "NotAuthorized",
    "NotLeader",
    "Problem",
    "ProblemKind",
    "ServiceRefusal",
    "install",
    "kind_of",
    "problem_response",
    "responses",
]

MEDIA_TYPE = "application/problem+json"
#: Every problem type is this prefix and a slug; the slugs are the stable part.
TYPE_BASE = "https://remstate.io/problems/"
#: Seconds a client should wait before retrying an unavailable store.
RETRY_AFTER = 5


class ServiceRefusal(Exception):
    """A refusal of the service itself (not of the store): nothing was attempted."""


class NotAuthenticated(ServiceRefusal):
    """No bearer token, or one the service does not accept (401)."""


class NotAuthorized(ServiceRefusal):
    """The caller may not use this verb on this resource (403)."""

    def __init__(self, caller: str, verb: str, resource: str) -> None:
        super().__init__(f"{caller} may not {verb} {resource}")
        self.caller = caller
        self.verb = verb
        self.resource = resource


class NotLeader(ServiceRefusal):
    """Only the leader runs cleanup; this replica is not it (409)."""

    def __init__(self, leader: str | None) -> None:
        where = f"the leader is {leader}" if leader else "no replica leads at the moment"
        super().__init__(f"this replica is not the leader: {where}; send cleanup there")
        self.leader = leader


@dataclass(frozen=True, slots=True)
class ProblemKind:
    """One problem type: its slug (the end of its ``type`` URI), status and title."""

    slug: str
    status: int
    title: str

    @property
    def type(self) -> str:
        return TYPE_BASE + self.slug


#: Most specific class first, as the CLI's exit codes. ``None``: request validation.
PROBLEMS: list[tuple[type[BaseException], ProblemKind]] = [
    (MaxIterationsReached, ProblemKind("max-iterations-reached", 409, "Max iterations reached")),
    (InvalidInput, ProblemKind("invalid-input", 400, "Invalid input")),
    (InvalidObject, ProblemKind("invalid-object", 422, "The store refused the object")),
    (NotFound, ProblemKind("not-found", 404, "Not found")),
    (PreconditionFailed, ProblemKind("precondition-failed", 412, "Precondition failed")),
    (RetriesExhausted, ProblemKind("contention", 409, "Other writers kept winning")),
    (Conflict, ProblemKind("conflict", 409, "Conflict")),
    (AlreadyExists, ProblemKind("conflict", 409, "Conflict")),
    (Gone, ProblemKind("gone", 410, "Cursor expired")),
    (OutcomeUnknown, ProblemKind("outcome-unknown", 503, "Outcome unknown")),
    (Unavailable, ProblemKind("unavailable", 503, "Store unavailable")),
    (ServerFault, ProblemKind("server-fault", 500, "Server fault")),
    (Forbidden, ProblemKind("forbidden", 403, "Forbidden")),
    (NotAuthorized, ProblemKind("forbidden", 403, "Forbidden")),
    (NotAuthenticated, ProblemKind("unauthenticated", 401, "Unauthenticated")),
    (NotLeader, ProblemKind("not-leader", 409, "Not the leader")),
    (CorruptState, ProblemKind("corrupt-state", 500, "Corrupt state")),
    (StateError, ProblemKind("corrupt-state", 500, "Corrupt state")),
    (CorruptStore, ProblemKind("corrupt-store", 500, "Corrupt store")),
    # The store failed in a way its backend could not classify.
    (StoreError, ProblemKind("store-error", 500, "Store error")),
    (RemstateError, ProblemKind("internal", 500, "Internal error")),
]

VALIDATION = ProblemKind("validation", 422, "Request validation failed")
INTERNAL = ProblemKind("internal", 500, "Internal error")


def kind_of(exc: BaseException) -> ProblemKind:
    """The problem type of an error; a bug of ours is ``internal`` (500)."""
    for cls, kind in PROBLEMS:
        if isinstance(exc, cls):
            return kind
    return INTERNAL


class Problem(BaseModel):
    """An RFC 9457 problem details object (``application/problem+json``)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None


_PROBLEM_SCHEMA = Problem.model_json_schema()


def problem_response(
    kind: ProblemKind, detail: str, request: Request | None, **extra: Any
) -> JSONResponse:
    """The problem as a response, with ``Retry-After`` when retrying will help."""
    body: dict[str, Any] = {
        "type": kind.type,
        "title": kind.title,
        "status": kind.status,
        "detail": detail,
    }
    if request is not None:
        body["instance"] = request.url.path
    body.update({k: v for k, v in extra.items() if v is not None})
    headers: dict[str, str] = {}
    if kind.status == 503:
        headers["Retry-After"] = str(RETRY_AFTER)
    if kind.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="remstate"'
    return JSONResponse(body, status_code=kind.status, media_type=MEDIA_TYPE, headers=headers)


def _extra(exc: BaseException) -> dict[str, Any]:
    """What a client may branch on besides the type, as fields of the problem."""
    if isinstance(exc, MaxIterationsReached):
        return {"iteration": exc.iteration, "max_iterations": exc.max_iterations}
    if isinstance(exc, PreconditionFailed):
        return {"resource_version": exc.actual}
    if isinstance(exc, NotAuthorized):
        return {"verb": exc.verb, "resource": exc.resource}
    if isinstance(exc, NotLeader):
        return {"leader": exc.leader}
    return {}


async def _on_error(request: Request, exc: Exception) -> JSONResponse:
    kind = kind_of(exc)
    detail = str(exc) if kind is not INTERNAL else f"{type(exc).__name__}: {exc}"
    return problem_response(kind, detail, request, **_extra(exc))


#: Starlette's own refusals (no such route, method, body too large), by status.
_HTTP_SLUGS = {404: "not-found", 405: "method-not-allowed", 413: "too-large"}


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    slug = _HTTP_SLUGS.get(exc.status_code, f"http-{exc.status_code}")
    kind = ProblemKind(slug, exc.status_code, HTTPStatus(exc.status_code).phrase)
    response = problem_response(kind, str(exc.detail), request)
    response.headers.update(exc.headers or {})
    return response


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
        for e in exc.errors()
    ]
    detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
    return problem_response(VALIDATION, detail, request, errors=errors)


def install(app: Any) -> None:
    """Register the handlers that turn every error into a problem response."""
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(HTTPException, _on_http)
    app.add_exception_handler(RemstateError, _on_error)
    app.add_exception_handler(ServiceRefusal, _on_error)
    app.add_exception_handler(Exception, _on_error)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a route's problems, each with its types listed."""
    documented: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        slugs = sorted({k.slug for _, k in PROBLEMS if k.status == status})
        if status == 422:
            slugs = sorted({*slugs, VALIDATION.slug})
        documented[status] = {
            "description": "problem types: " + ", ".join(TYPE_BASE + s for s in slugs),
            "content": {MEDIA_TYPE: {"schema": _PROBLEM_SCHEMA}},
        }
    return documented
