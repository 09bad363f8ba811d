"""Who may call the service: the ``Authorizer`` protocol and its local implementations.

Design constraint: authorization mirrors kubectl's. Each route names the
verbs it needs on ConfigMaps (``get``/``list`` to read, ``create``/``update``
to write, ``delete`` to delete and clean up), and the authorizer decides, so
the same RBAC that governs kubectl governs the API (the Kubernetes
implementation, with TokenReview and SubjectAccessReview, lives in a module
of its own). Locally there is no RBAC: ``OpenLocal`` serves loopback without
a token, and ``TokenFile`` asks every caller for the one token in a file.
The probes are never authorized.

An authorizer is called in the threadpool (it may do blocking I/O) and
raises ``NotAuthenticated`` (401) or ``NotAuthorized`` (403, naming the verb
and the resource); it writes nothing.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import urlsplit

from starlette.requests import Request

from remstate.errors import InvalidInput
from remstate.service.checks import ReadinessCheck
from remstate.service.problems import NotAuthenticated, NotAuthorized

__all__ = [
    "RESOURCE",
    "Authorizer",
    "Caller",
    "OpenLocal",
    "TokenFile",
    "Verb",
    "bearer_token",
    "describe_verbs",
    "refuse",
]

Verb = Literal["get", "list", "create", "update", "delete"]

#: What every verb applies to: the state lives in ConfigMaps.
RESOURCE = "configmaps"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made a request, as the authorizer established it."""

    name: str
    groups: tuple[str, ...] = field(default=())


class Authorizer(Protocol):
    """Decides whether a request may use ``verbs`` on ConfigMaps."""

    def authorize(self, request: Request, verbs: Sequence[Verb]) -> Caller:
        """The caller, if every verb is allowed.

        Raises:
            NotAuthenticated: no credentials, or ones that are not accepted.
            NotAuthorized: the caller may not use one of the verbs.
        """
        ...

    def readiness_checks(self) -> Sequence[ReadinessCheck]:
        """Checks ``/readyz`` runs besides the store's (our own permissions, say)."""
        ...


def bearer_token(request: Request) -> str | None:
    """The request's bearer token, or None when there is none."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


#: The names a loopback service answers to: a browser sends one of these as the
#: Host of a page it loaded from this machine.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_WRITES = frozenset({"create", "update", "patch", "delete"})


def _hostname(value: str) -> str:
    """``127.0.0.1:8080`` -> ``127.0.0.1``; ``[::1]:8080`` -> ``::1``; lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    return value.rpartition(":")[0] if value.count(":") == 1 else value


class OpenLocal:
    """Everyone on this machine may do everything, as with a local CLI; nobody else.

    Binding to loopback keeps other machines out, but not other web pages in
    the user's browser: a page from anywhere can send requests to
    127.0.0.1, and a DNS-rebound name can even read the answers. So a request
    must name a loopback host (``Host``), and a write must not come from a
    page of another origin (``Origin``, ``Sec-Fetch-Site``); otherwise 403.
    Scripts and the CLI send neither header, or loopback ones.
    """

    def authorize(self, request: Request, verbs: Sequence[Verb]) -> Caller:
        caller = Caller("local")
        host = _hostname(request.headers.get("host", "127.0.0.1"))
        if host not in LOOPBACK_HOSTS:
            raise NotAuthorized(f"a request for host {host!r}", "reach", "this loopback service")
        if _WRITES.intersection(verbs):
            origin = request.headers.get("origin")
            foreign = (
                origin is not None and _hostname(urlsplit(origin).netloc) not in LOOPBACK_HOSTS
            )
            if foreign or request.headers.get("sec-fetch-site") == "cross-site":
                raise NotAuthorized(
                    f"a page from {origin or 'another site'}", describe_verbs(verbs), RESOURCE
                )
        return caller

    def readiness_checks(self) -> Sequence[ReadinessCheck]:
        return ()


class TokenFile:
    """Every request must carry the bearer token kept in a file; it may then do everything.

    The file is read once, at start; surrounding whitespace is ignored. The
    comparison takes constant time (``hmac.compare_digest``).

    Raises:
        InvalidInput: the file cannot be read, or holds no token.
    """

    def __init__(self, path: str | Path) -> None:
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise InvalidInput(f"cannot read the token file {str(path)!r}: {e}") from e
        if not token or any(c.isspace() for c in token):
            raise InvalidInput(f"the token file {str(path)!r} holds no token (one word)")
        self._token = token.encode()

    def authorize(self, request: Request, verbs: Sequence[Verb]) -> Caller:
        token = bearer_token(request)
        if token is None:
            raise NotAuthenticated("this service needs a bearer token (Authorization: Bearer …)")
        if not hmac.compare_digest(token.encode(), self._token):
            raise NotAuthenticated("the bearer token is not the one this service accepts")
        return Caller("token-file")

    def readiness_checks(self) -> Sequence[ReadinessCheck]:
        return ()


def describe_verbs(verbs: Sequence[Verb]) -> str:
    """``create and update``: the verbs as a refusal names them."""
    return " and ".join(verbs)


def refuse(caller: Caller, verbs: Sequence[Verb], namespace: str | None = None) -> NotAuthorized:
    """The 403 for a caller refused ``verbs`` on ConfigMaps (in ``namespace``)."""
    resource = RESOURCE if namespace is None else f"{RESOURCE} in namespace {namespace}"
    return NotAuthorized(caller.name, describe_verbs(verbs), resource)
