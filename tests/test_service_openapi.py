"""The OpenAPI document is accurate: every route's documented errors are the ones it returns.

The test walks every route of the app. For each it provokes each error it
can: its own bad inputs (a table below), no token (401), a token without
the right (403), a body too large (413), other writers always winning (409,
for the writes), and the store down (503). Each answer must be a documented
status of that route with an ``application/problem+json`` body, and every
error status the route documents must be among those provoked, except the
ones no request can provoke against a sound store (``UNPROVOKED``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from remstate import Conflict, RetryPolicy, Unavailable
from remstate.schema import object_name
from remstate.service.app import MAX_BODY
from remstate.store import Store
from tests.backends import LosesResponses
from tests.service import MEDIA_TYPE, Follower, Readers, build

API = "/api/v1"
ADMIN = {"Authorization": "Bearer admin"}
FEEDBACK = {"author": "rev", "severity": "high", "issue_type": "bug", "description": "x"}
#: 500: a corrupt stored state or a bug, not provoked by a request; 410: a
#: continue token that the API server has compacted away (tested on the store).
UNPROVOKED = {500, 410}

#: (method, route template) -> [(status, client, path, request options)]. The
#: client is "admin" (max 1 iteration; task t1 at it, with feedback fb-1) or
#: "follower" (a replica that does not lead).
Case = tuple[int, str, str, dict[str, Any]]
ERRORS: dict[tuple[str, str], list[Case]] = {
    ("GET", "/tasks"): [
        (400, "admin", "/tasks", {"params": {"selector": "a in ("}}),
        (422, "admin", "/tasks", {"params": {"limit": 0}}),
    ],
    ("GET", "/tasks/{task_id}"): [
        (400, "admin", "/tasks/a%09b", {}),
        (404, "admin", "/tasks/none", {}),
    ],
    ("DELETE", "/tasks/{task_id}"): [
        (400, "admin", "/tasks/t1", {"headers": {"If-Match": 'W/"1"'}}),
        (404, "admin", "/tasks/none", {}),
        (412, "admin", "/tasks/t1", {"headers": {"If-Match": '"999999"'}}),
    ],
    ("PUT", "/tasks/{task_id}/status"): [
        (400, "admin", "/tasks/a%09b/status", {"json": {"status": "failed"}}),
        (422, "admin", "/tasks/t1/status", {"json": {"status": "bored"}}),
    ],
    ("PATCH", "/tasks/{task_id}/metadata"): [
        (400, "admin", "/tasks/a%09b/metadata", {"json": {"set": {"a": 1}}}),
        (422, "admin", "/tasks/t1/metadata", {"json": {"remove": "a"}}),
    ],
    ("PATCH", "/tasks/{task_id}/policy"): [
        (400, "admin", "/tasks/t1/policy", {"json": {"ttl": "soon"}}),
        (422, "admin", "/tasks/t1/policy", {"json": {"max_iterations": "2"}}),
    ],
    ("POST", "/tasks/{task_id}/iterations"): [
        (400, "admin", "/tasks/t1/iterations", {"json": {"op_id": ""}}),
        (409, "admin", "/tasks/t1/iterations", {"json": {}}),
        (422, "admin", "/tasks/t1/iterations", {"json": {"note": 5}}),
    ],
    ("POST", "/tasks/{task_id}/feedback"): [
        (400, "admin", "/tasks/t1/feedback", {"json": {**FEEDBACK, "description": "x" * 70000}}),
        (422, "admin", "/tasks/t1/feedback", {"json": {**FEEDBACK, "severity": "dire"}}),
    ],
    ("PATCH", "/tasks/{task_id}/feedback/{entry_id}"): [
        (400, "admin", "/tasks/t1/feedback/fb-9", {"json": {"resolved": True}}),
        (404, "admin", "/tasks/none/feedback/fb-1", {"json": {"resolved": True}}),
        (422, "admin", "/tasks/t1/feedback/fb-1", {"json": {"resolved": "yes"}}),
    ],
    ("POST", "/tasks/{task_id}/errors"): [
        (400, "admin", "/tasks/t1/errors", {"json": {"message": " "}}),
        (422, "admin", "/tasks/t1/errors", {"json": {"message": 5}}),
    ],
    ("GET", "/tasks/{task_id}/validation"): [
        (400, "admin", "/tasks/a%09b/validation", {}),
        (404, "admin", "/tasks/none/validation", {}),
    ],
    ("POST", "/tasks/{task_id}/recover"): [
        (400, "admin", "/tasks/a%09b/recover", {}),
        (404, "admin", "/tasks/none/recover", {}),
    ],
    ("GET", "/tasks/{task_id}/snapshots"): [
        (400, "admin", "/tasks/a%09b/snapshots", {}),
    ],
    ("POST", "/tasks/{task_id}/snapshots/{name}/restore"): [
        (400, "admin", "/tasks/a%09b/snapshots/task-t1-state-s1/restore", {}),
        (404, "admin", "/tasks/t1/snapshots/task-t1-state-s9/restore", {}),
    ],
    ("POST", "/tasks/{task_id}/restore"): [
        (400, "admin", "/tasks/a%09b/restore", {}),
        (404, "admin", "/tasks/none/restore", {}),
    ],
    # Its 401, 403, 413 and 503 are provoked as every route's are (below).
    ("GET", "/permissions"): [],
    ("GET", "/events"): [
        (400, "admin", "/events", {"params": {"since": "yesterday"}}),
        (400, "admin", "/events", {"params": {"status": "bored"}}),
    ],
    ("POST", "/cleanup"): [
        (400, "admin", "/cleanup", {"json": {"ttl": "soon"}}),
        (409, "follower", "/cleanup", {"json": {}}),
        (422, "admin", "/cleanup", {"json": {"force": "yes"}}),
    ],
}
for kind in ("iterations", "feedback", "errors"):
    ERRORS[("GET", f"/tasks/{{task_id}}/{kind}")] = [
        (400, "admin", f"/tasks/t1/{kind}", {"params": {"cursor": "garbage"}}),
        (404, "admin", f"/tasks/none/{kind}", {}),
        (422, "admin", f"/tasks/t1/{kind}", {"params": {"limit": 0}}),
    ]

#: A request each route answers with success (on a sound store): its method,
#: path and options. Run against a store that is down, each must be 503.
VALID: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {
    ("GET", "/tasks"): ("/tasks", {}),
    ("GET", "/tasks/{task_id}"): ("/tasks/t1", {}),
    ("DELETE", "/tasks/{task_id}"): ("/tasks/t1", {}),
    ("PUT", "/tasks/{task_id}/status"): ("/tasks/t1/status", {"json": {"status": "failed"}}),
    ("PATCH", "/tasks/{task_id}/metadata"): ("/tasks/t1/metadata", {"json": {"set": {"a": 1}}}),
    ("PATCH", "/tasks/{task_id}/policy"): ("/tasks/t1/policy", {"json": {"max_iterations": 3}}),
    ("POST", "/tasks/{task_id}/iterations"): ("/tasks/t2/iterations", {"json": {}}),
    ("GET", "/tasks/{task_id}/iterations"): ("/tasks/t1/iterations", {}),
    ("GET", "/tasks/{task_id}/feedback"): ("/tasks/t1/feedback", {}),
    ("POST", "/tasks/{task_id}/feedback"): ("/tasks/t1/feedback", {"json": FEEDBACK}),
    ("PATCH", "/tasks/{task_id}/feedback/{entry_id}"): (
        "/tasks/t1/feedback/fb-1",
        {"json": {"resolved": True}},
    ),
    ("GET", "/tasks/{task_id}/errors"): ("/tasks/t1/errors", {}),
    ("POST", "/tasks/{task_id}/errors"): ("/tasks/t1/errors", {"json": {"message": "m"}}),
    ("GET", "/tasks/{task_id}/validation"): ("/tasks/t1/validation", {}),
    ("POST", "/tasks/{task_id}/recover"): ("/tasks/t1/recover", {}),
    ("GET", "/tasks/{task_id}/snapshots"): ("/tasks/t1/snapshots", {}),
    ("POST", "/tasks/{task_id}/snapshots/{name}/restore"): (
        "/tasks/t1/snapshots/task-t1-state-s1/restore",
        {},
    ),
    ("POST", "/tasks/{task_id}/restore"): ("/tasks/t1/restore", {}),
    ("POST", "/cleanup"): ("/cleanup", {"json": {"dry_run": True}}),
    ("GET", "/permissions"): ("/permissions", {}),
    ("GET", "/events"): ("/events", {}),
}

#: The routes that ask only the authorizer, not the store: their 503 is the
#: authorizer's (the Kubernetes one's API server down), provoked with ``DownAuth``.
AUTHORIZER_ONLY = {("GET", "/permissions")}


class DownAuth(Readers):
    """The authorizer of a service whose API server does not answer its reviews."""

    def authorize(self, request: Any, verbs: Any) -> Any:
        raise Unavailable("the API server does not answer the TokenReview")


#: Endless streams: the test client would wait for their end. Their 200 is
#: tested against a real server (tests/test_events.py).
STREAMS = {("GET", "/events")}


#: The routes that write the task: with other writers always winning, 409 contention.
WRITES = {
    ("DELETE", "/tasks/{task_id}"),
    ("PUT", "/tasks/{task_id}/status"),
    ("PATCH", "/tasks/{task_id}/metadata"),
    ("PATCH", "/tasks/{task_id}/policy"),
    ("POST", "/tasks/{task_id}/iterations"),
    ("POST", "/tasks/{task_id}/feedback"),
    ("PATCH", "/tasks/{task_id}/feedback/{entry_id}"),
    ("POST", "/tasks/{task_id}/errors"),
}


@pytest.fixture
def clients(store: Store) -> dict[str, TestClient]:
    """The admin's client on a sound store, a follower's, and one on a store that is down."""
    admin, manager = build(store, authorizer=Readers(), max_iterations=1)
    manager.increment_iteration("t1")
    manager.append_feedback(
        "t1", author="rev", severity="high", issue_type="bug", description="x", id="fb-1"
    )
    follower = build(store, authorizer=Readers(), leadership=Follower())[0]
    down = LosesResponses(
        store,
        10**6,
        methods=frozenset({"get", "create", "replace", "annotate", "delete", "list"}),
        error=functools.partial(Unavailable, maybe_applied=False),  # type: ignore[arg-type]
        commit=False,
    )
    racing = LosesResponses(
        store,
        10**6,
        methods=frozenset({"create", "replace", "delete"}),
        error=Conflict,
        commit=False,
    )
    contended = build(racing, authorizer=Readers(), retry=RetryPolicy(max_attempts=2))[0]  # type: ignore[arg-type]
    outage = build(down, authorizer=Readers(), retry=RetryPolicy(deadline=0.01))[0]  # type: ignore[arg-type]
    unreviewed = build(store, authorizer=DownAuth())[0]
    return {
        "admin": admin,
        "follower": follower,
        "down": outage,
        "contended": contended,
        "unreviewed": unreviewed,
    }


def documented(client: TestClient, method: str, template: str) -> dict[str, Any]:
    responses: dict[str, Any] = client.get("/openapi.json").json()["paths"][API + template][
        method.lower()
    ]["responses"]
    return responses


def api_routes(client: TestClient) -> set[tuple[str, str]]:
    """Every (method, template) the app routes under the API prefix, documented or not."""
    found: set[tuple[str, str]] = set()

    def walk(routes: list[Any]) -> None:
        for route in routes:
            if isinstance(route, APIRoute) and route.path.startswith(API):
                found.update((m, route.path.removeprefix(API)) for m in route.methods)
            elif hasattr(route, "original_router"):  # an included router, kept nested
                walk(route.original_router.routes)

    walk(client.app.routes)  # type: ignore[attr-defined]
    return found


def test_every_route_is_in_the_tables(clients: dict[str, TestClient]) -> None:
    """The tables cover every route of the API, and nothing that is not one."""
    routes = api_routes(clients["admin"])
    assert routes == set(ERRORS) == set(VALID)


def test_each_error_is_documented_and_each_documented_error_happens(
    clients: dict[str, TestClient],
) -> None:
    """Each route's errors are problem+json with a documented status, and vice versa."""
    admin = clients["admin"]
    for (method, template), cases in sorted(ERRORS.items()):
        docs = documented(admin, method, template)
        provoked: set[int] = set()
        url, valid = VALID[(method, template)]
        options = {k: v for k, v in valid.items() if k != "headers"}
        headers = valid.get("headers", {})
        attempts = [
            (401, clients["admin"], url, {**options, "headers": headers}),
            (403, clients["admin"], url, {**options, "headers": {**headers, **NOBODY}}),
            (
                503,
                clients["unreviewed" if (method, template) in AUTHORIZER_ONLY else "down"],
                url,
                {**options, "headers": {**headers, **ADMIN}},
            ),
            (413, clients["admin"], url, {"content": HUGE, "headers": {**headers, **ADMIN}}),
        ]
        if (method, template) in WRITES:
            attempts.append((409, clients["contended"], url, {**options, "headers": ADMIN}))
        for status, who, path, request in cases:
            extra = dict(request)
            extra["headers"] = {**extra.get("headers", {}), **ADMIN}
            attempts.append((status, clients[who], path, extra))
        for status, client, path, request in attempts:
            response = client.request(method, API + path, **request)
            where = f"{method} {template} ({path})"
            assert response.status_code == status, f"{where}: {response.text}"
            assert response.headers["content-type"] == MEDIA_TYPE, where
            assert str(status) in docs, f"{where}: {status} is not documented"
            assert MEDIA_TYPE in docs[str(status)]["content"], where
            provoked.add(status)
        errors = {int(s) for s in docs if int(s) >= 400}
        assert errors - UNPROVOKED <= provoked, f"{method} {template}: never provoked"


def test_each_success_is_documented(clients: dict[str, TestClient], store: Store) -> None:
    """Each route's success status is one it documents (deletes last: they remove t1)."""
    admin = clients["admin"]
    # A damaged counter, so that recover takes the snapshot task-t1-state-s1.
    head = store.get(object_name("t1"))
    store.replace(dataclasses.replace(head, data={**head.data, "iteration": "2"}))

    # Recover first (it repairs t1), the snapshot's restore (which puts the damage
    # back) and the deletes last.
    def rank(route: tuple[str, str]) -> int:
        method, template = route
        if template.endswith("/recover"):
            return 0
        return (
            2 if template.endswith("/snapshots/{name}/restore") else 3 if method == "DELETE" else 1
        )

    order = sorted(set(VALID) - STREAMS, key=rank)
    for method, template in order:
        path, request = VALID[(method, template)]
        response = admin.request(method, API + path, headers=ADMIN, **request)
        docs = documented(admin, method, template)
        assert response.status_code < 300, f"{method} {template}: {response.text}"
        assert str(response.status_code) in docs, f"{method} {template}"


NOBODY = {"Authorization": "Bearer nobody"}
#: A body over the service's limit (1 MiB).
HUGE = b"x" * (MAX_BODY + 1)


def test_the_problem_schema_is_a_component(store: Store) -> None:
    """Every problem response's schema is the Problem object (type, title, status, detail)."""
    admin = build(store)[0]
    spec = admin.get("/openapi.json").json()
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400 and path.startswith(API):
                    schema = response["content"][MEDIA_TYPE]["schema"]
                    assert set(schema["required"]) == {"type", "title", "status", "detail"}, (
                        method,
                        path,
                    )
