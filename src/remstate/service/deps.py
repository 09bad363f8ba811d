"""What a route needs from the app: the manager, the caller's permission, the leadership.

Every dependency here is a plain function, so FastAPI runs it (as it runs the
routes) in its threadpool: the manager and the authorizer block on I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request

from remstate.manager import StateManager
from remstate.service.auth import Authorizer, Caller, Verb
from remstate.service.leadership import Leadership

__all__ = [
    "API_PREFIX",
    "BODY",
    "COMMON",
    "READ",
    "WRITE",
    "Services",
    "allow",
    "manager_of",
    "services",
]

#: Where the state API lives; the probes and /metrics are at the root.
API_PREFIX = "/api/v1"

#: What any API route may answer: no token, no right, a body too large (refused
#: before routing, whatever the route), a server fault (a corrupt state, etcd
#: full), the store down.
COMMON = (401, 403, 413, 500, 503)
#: What a route with a body may answer too: a body that is not valid.
BODY = (422,)
#: What a write may answer too: other writers kept winning (409 contention).
CONTENDED = (409,)

#: The verbs a route needs, as kubectl's would.
READ: tuple[Verb, ...] = ("get",)
WRITE: tuple[Verb, ...] = ("create", "update")


@dataclass(frozen=True, slots=True)
class Services:
    """What ``create_app`` was given, kept on ``app.state.services``."""

    manager: StateManager
    authorizer: Authorizer
    leadership: Leadership
    cleanup_defaults: dict[str, Any]


def services(request: Request) -> Services:
    found = request.app.state.services
    assert isinstance(found, Services)
    return found


def allow(*verbs: Verb) -> Any:
    """A dependency that lets the request through if the caller may use ``verbs``."""

    def check(request: Request) -> Caller:
        return services(request).authorizer.authorize(request, verbs)

    check.__name__ = f"allow_{'_'.join(verbs)}"
    return Depends(check)


def manager_of(request: Request) -> StateManager:
    return services(request).manager
