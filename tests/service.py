"""How the service tests build the app: a real store of each backend, a clock that moves when told.

Plain helpers, not fixtures, so each test module chooses its authorizer and
leadership; the probes and auth tests pass their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from starlette.requests import Request

from remstate import StateManager
from remstate.service import create_app
from remstate.service.auth import Authorizer, Caller, OpenLocal, Verb, bearer_token, refuse
from remstate.service.checks import ReadinessCheck
from remstate.service.leadership import Always, Leadership
from remstate.service.problems import MEDIA_TYPE, TYPE_BASE, NotAuthenticated
from remstate.store import Store

__all__ = ["MEDIA_TYPE", "Clock", "Follower", "Readers", "build", "problem"]


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


class Follower(Always):
    """A replica that does not lead: another one, ``leader``, does."""

    def __init__(self, leader: str | None = "replica-b") -> None:
        super().__init__("replica-a")
        self.leader = leader

    def is_leader(self) -> bool:
        return False

    def holder(self) -> str | None:
        return self.leader


class Readers:
    """An authorizer with four tokens: ``reader`` may get and list, ``editor`` also
    create and update (not delete), ``admin`` anything, ``nobody`` nothing.

    Our own protocol's implementation (as the Kubernetes one will be), so the
    403 path is tested with a real decision, not a mock.
    """

    def __init__(self, failing_check: str | None = None) -> None:
        self.failing_check = failing_check

    def authorize(self, request: Request, verbs: Sequence[Verb]) -> Caller:
        token = bearer_token(request)
        if token == "admin":
            return Caller("admin")
        if token == "reader":
            caller = Caller("reader")
            if all(v in ("get", "list") for v in verbs):
                return caller
            raise refuse(caller, verbs, "agents")
        if token == "editor":
            caller = Caller("editor")
            if all(v != "delete" for v in verbs):
                return caller
            raise refuse(caller, verbs, "agents")
        if token == "nobody":
            raise refuse(Caller("nobody"), verbs, "agents")
        raise NotAuthenticated("a bearer token is needed")

    def readiness_checks(self) -> Sequence[ReadinessCheck]:
        if self.failing_check is None:
            return ()

        def fail() -> None:
            raise RuntimeError("our own permissions are missing")

        return (ReadinessCheck(self.failing_check, fail),)


def build(
    store: Store,
    clock: Clock | None = None,
    *,
    authorizer: Authorizer | None = None,
    leadership: Leadership | None = None,
    registry: CollectorRegistry | None = None,
    **manager_options: Any,
) -> tuple[TestClient, StateManager]:
    """A test client of the app on ``store``, and the manager it calls."""
    manager = StateManager(store, clock=clock or Clock(), **manager_options)
    app = create_app(
        manager,
        authorizer=authorizer or OpenLocal(),
        leadership=leadership or Always("replica-a"),
        registry=registry or CollectorRegistry(),
        # Unpaced: the pacing has tests of its own.
        cleanup_defaults={"requests_per_second": None},
    )
    return TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False), manager


def problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    """Check that ``response`` is the problem ``slug`` with ``status``; its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == MEDIA_TYPE
    body: dict[str, Any] = response.json()
    assert body["type"] == TYPE_BASE + slug, body
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body
