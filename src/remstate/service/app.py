"""``create_app``: the FastAPI application of ``remstate serve``, built from what it is given.

Design constraint: the app builds nothing hidden. It takes the manager (and
so the store), the authorizer, the leadership and the metrics registry from
its caller (``remstate.service.server`` in production, the tests with a store
of each backend), as the library's constructors do. Its routes are plain
(synchronous) functions: FastAPI runs them in its threadpool, since the
manager blocks on the store; each call is bounded by the manager's retry
deadline (the server sets it), so no request waits on an outage for ever.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from remstate.manager import StateManager
from remstate.service import dashboard, problems
from remstate.service.auth import Authorizer
from remstate.service.deps import API_PREFIX, Services
from remstate.service.events import EventHub
from remstate.service.leadership import Leadership
from remstate.service.limits import BodyLimit
from remstate.service.requests import RequestMetrics
from remstate.service.routes import (
    actions,
    cleanup,
    events,
    history,
    permissions,
    probes,
    tasks,
)

__all__ = ["API_PREFIX", "MAX_BODY", "create_app"]

#: The largest request body accepted (413 beyond): a feedback description is at
#: most 64 KiB, metadata must fit a 1 MiB object with everything else.
MAX_BODY = 1024 * 1024


def create_app(
    manager: StateManager,
    *,
    authorizer: Authorizer,
    leadership: Leadership,
    registry: CollectorRegistry,
    cleanup_defaults: Mapping[str, Any] | None = None,
    title: str = "remstate",
    hub: EventHub | None = None,
) -> FastAPI:
    """The service's application.

    Args:
        manager: the state manager every route calls.
        authorizer: decides who may do what (``OpenLocal``, ``TokenFile``, or
            the Kubernetes one).
        leadership: whether this replica leads (only the leader cleans up).
        registry: where the request metrics go, and what ``/metrics`` serves
            (give the manager's, so its metrics are served too).
        cleanup_defaults: keyword arguments of ``cleanup_old_states`` for a
            manual cleanup that does not give them (``ttl``, ``grace``...).
        hub: the live changes' hub (``GET /events``); by default one on the
            manager's store, with its retry policy and iteration default. It
            starts with the first stream and stops with the app.
    """
    if hub is None:
        hub = EventHub(
            manager.store,
            retry=manager.retry,
            default_max_iterations=manager.max_iterations,
            registry=registry,
        )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        hub.close()

    app = FastAPI(
        title=title,
        summary="The state of agent remediation loops, over HTTP",
        version="1",
        lifespan=lifespan,
    )
    app.state.events = hub
    app.state.services = Services(
        manager=manager,
        authorizer=authorizer,
        leadership=leadership,
        cleanup_defaults=dict(cleanup_defaults or {}),
    )
    app.state.registry = registry
    problems.install(app)
    app.add_middleware(BodyLimit, max_body=MAX_BODY)
    # Before anything reads the request or logs its URL: ?access_token= (events only).
    app.add_middleware(events.AccessTokenQuery)
    # Added last, so outermost: it counts the refusals of the others too.
    app.add_middleware(RequestMetrics, registry=registry)
    app.include_router(probes.router)
    app.include_router(tasks.listing)
    for module in (tasks, history, actions, cleanup, events, permissions):
        app.include_router(module.router)
    dashboard.install(app)
    _document_validation_as_problems(app)
    return app


def _document_validation_as_problems(app: FastAPI) -> None:
    """Make the OpenAPI document say what the routes do on a request that fails validation.

    FastAPI documents a 422 with its own ``HTTPValidationError`` body on every
    route with parameters; ours answer ``application/problem+json`` (type
    ``validation``), and only where a parameter or body can fail, which each
    route documents itself. So the generated 422s are dropped, with their schemas.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = generate()
        for operations in spec.get("paths", {}).values():
            for operation in operations.values():
                answer = operation.get("responses", {}).get("422")
                if answer is not None and "application/json" in answer.get("content", {}):
                    del operation["responses"]["422"]
        schemas = spec.get("components", {}).get("schemas", {})
        for generated in ("HTTPValidationError", "ValidationError"):
            schemas.pop(generated, None)
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
