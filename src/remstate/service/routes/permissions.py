"""``GET /api/v1/permissions``: which verbs the caller has, so a client shows only what it may do.

Design constraint: the answer is the authorizer's own decision, verb by
verb (the same call every route makes), so the dashboard never offers an
action the API would refuse. A caller who may not even ``get`` is refused
(403): there is nothing to show it. Each verb the caller lacks is ``false``,
not an error.
"""

from __future__ import annotations

from typing import get_args

from fastapi import APIRouter, Request
from pydantic import BaseModel

from remstate.service.auth import Authorizer, Verb
from remstate.service.deps import API_PREFIX, COMMON, READ, allow, services
from remstate.service.problems import NotAuthorized, responses

__all__ = ["Permissions", "permitted", "router"]

router = APIRouter(prefix=API_PREFIX, tags=["access"])

#: Every verb a route may need, in the order the answer lists them.
VERBS: tuple[Verb, ...] = get_args(Verb)


class Permissions(BaseModel):
    """What the caller may do on the service's ConfigMaps, verb by verb."""

    get: bool
    list: bool
    create: bool
    update: bool
    delete: bool


def permitted(authorizer: Authorizer, request: Request) -> dict[str, bool]:
    """Each verb, and whether the caller of ``request`` may use it.

    Raises:
        NotAuthenticated: the request's credentials are missing or not accepted.
    """
    answer: dict[str, bool] = {}
    for verb in VERBS:
        try:
            authorizer.authorize(request, (verb,))
        except NotAuthorized:
            answer[verb] = False
        else:
            answer[verb] = True
    return answer


@router.get("/permissions", dependencies=[allow(*READ)], responses=responses(*COMMON))
def permissions(request: Request) -> Permissions:
    """The verbs the caller may use (as RBAC decides, on ConfigMaps), each true or false."""
    return Permissions(**permitted(services(request).authorizer, request))
