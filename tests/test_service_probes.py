"""The probes, the metrics, and the one table that maps every error class to a problem type."""

from __future__ import annotations

import inspect

import pytest
from prometheus_client import CollectorRegistry

import remstate.errors
from remstate import RemstateError, Unavailable
from remstate.service import problems
from remstate.service.problems import PROBLEMS, TYPE_BASE, kind_of
from remstate.store import Store
from tests.backends import LosesResponses
from tests.service import Readers, build, problem


class TestProbes:
    def test_healthz(self, store: Store) -> None:
        """Liveness answers ok."""
        client = build(store)[0]
        assert client.get("/healthz").json() == {"status": "ok"}

    def test_readyz_when_the_store_answers(self, store: Store) -> None:
        """Ready: the store check passes, and is named."""
        response = build(store)[0].get("/readyz")
        assert response.status_code == 200
        assert response.json()["checks"] == [{"name": "store", "ok": True, "detail": ""}]

    def test_readyz_names_the_failing_check(self, store: Store) -> None:
        """A check the authorizer contributes fails: 503, and the body names it."""
        client = build(store, authorizer=Readers(failing_check="permissions"))[0]
        response = client.get("/readyz")
        assert response.status_code == 503
        body = response.json()
        assert body["failed"] == ["permissions"]
        assert "permissions are missing" in body["checks"][1]["detail"]

    def test_readyz_fails_when_the_store_is_closed(self, tmp_path: object) -> None:
        """The embedded store closed under the service: 503, failing check ``store``."""
        from pathlib import Path

        from remstate.store.embedded import EmbeddedStore

        assert isinstance(tmp_path, Path)
        closed = EmbeddedStore(str(tmp_path / "s.db"))
        client = build(closed)[0]
        closed.close()
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["failed"] == ["store"]


class TestMetrics:
    def test_requests_counted_by_route_template_and_status(self, store: Store) -> None:
        """/metrics counts requests by route template (never the task id) and status."""
        registry = CollectorRegistry()
        client = build(store, registry=registry)[0]
        for task in ("a", "b"):
            client.post(f"/api/v1/tasks/{task}/iterations", json={})
        client.get("/api/v1/tasks/nobody")
        client.get("/no/such/route")
        text = client.get("/metrics").text
        route = 'route="/api/v1/tasks/{task_id}/iterations"'
        assert f'remstate_http_requests_total{{method="POST",{route},status="200"}} 2.0' in text
        assert (
            'remstate_http_requests_total{method="GET",route="/api/v1/tasks/{task_id}",'
            'status="404"} 1.0' in text
        )
        assert 'route="unmatched",status="404"} 1.0' in text
        assert f'remstate_http_request_duration_seconds_count{{method="POST",{route}}} 2.0' in text
        assert "/api/v1/tasks/a" not in text

    def test_the_registry_given_is_served(self, store: Store) -> None:
        """Collectors in the registry given (the manager's, say) are served as well."""
        from prometheus_client import Counter

        registry = CollectorRegistry()
        Counter("remstate_example", "an example", registry=registry).inc(3)
        text = build(store, registry=registry)[0].get("/metrics").text
        assert "remstate_example_total 3.0" in text


ERRORS = [
    cls
    for _, cls in inspect.getmembers(remstate.errors, inspect.isclass)
    if issubclass(cls, RemstateError)
]


class TestProblemTypes:
    @pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
    def test_every_error_class_has_its_type(self, cls: type[RemstateError]) -> None:
        """Each class of the error tree maps to a problem type of its own row, not ``internal``."""
        rows = [kind for c, kind in PROBLEMS if issubclass(cls, c)]
        assert rows, cls
        if cls is not RemstateError:
            assert rows[0].slug != "internal", cls

    def test_the_types_are_stable(self) -> None:
        """The slugs clients branch on do not change."""
        slugs = {
            "MaxIterationsReached": ("max-iterations-reached", 409),
            "InvalidInput": ("invalid-input", 400),
            "InvalidObject": ("invalid-object", 422),
            "StateNotFound": ("not-found", 404),
            "PreconditionFailed": ("precondition-failed", 412),
            "Conflict": ("conflict", 409),
            "RetriesExhausted": ("contention", 409),
            "OutcomeUnknown": ("outcome-unknown", 503),
            "Unavailable": ("unavailable", 503),
            "Forbidden": ("forbidden", 403),
            "ServerFault": ("server-fault", 500),
            "CorruptState": ("corrupt-state", 500),
        }
        for name, (slug, status) in slugs.items():
            kind = kind_of(getattr(remstate.errors, name).__new__(getattr(remstate.errors, name)))
            assert (kind.slug, kind.status, kind.type) == (slug, status, TYPE_BASE + slug), name
        assert kind_of(problems.NotLeader("b")).slug == "not-leader"
        assert kind_of(ValueError("a bug")).slug == "internal"

    def test_unavailable_is_503_with_retry_after(self, store: Store) -> None:
        """The store down until the deadline: 503 unavailable with Retry-After; nothing written."""
        from remstate import RetryPolicy, StateManager

        client = build(
            LosesResponses(store, losses=100, commit=False),  # type: ignore[arg-type]
            retry=RetryPolicy(deadline=0.05),
        )[0]
        response = client.post("/api/v1/tasks/t1/iterations", json={})
        problem(response, 503, "unavailable")
        assert int(response.headers["retry-after"]) > 0
        assert StateManager(store).list_states().summaries == []

    def test_outcome_unknown_has_its_own_type(self, store: Store) -> None:
        """A write that may have reached the store, unconfirmed by the deadline: outcome-unknown."""
        import functools

        from remstate import RetryPolicy

        lossy = LosesResponses(
            store,
            0,
            methods=frozenset({"replace"}),
            error=functools.partial(Unavailable, maybe_applied=True),  # type: ignore[arg-type]
            commit=False,
        )
        client = build(lossy, retry=RetryPolicy(deadline=0.05))[0]  # type: ignore[arg-type]
        assert client.post("/api/v1/tasks/t1/iterations", json={}).status_code == 200
        lossy.losses = 10**6
        response = client.post("/api/v1/tasks/t1/iterations", json={"op_id": "k1"})
        problem(response, 503, "outcome-unknown")
        assert "retry-after" in response.headers
