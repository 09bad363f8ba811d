"""Request counts and latencies by route template and status, for ``/metrics``.

A pure ASGI middleware (Starlette's ``BaseHTTPMiddleware`` runs the app in a
task of its own, which changes how errors and cancellation propagate; this
one only wraps ``send``). The route is the template (``/api/v1/tasks/{task_id}``),
never the path, so a task id cannot blow up the metric's cardinality; a
request that matched no route counts as ``unmatched``.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["RequestMetrics"]


#: The methods counted by name; any other is "other".
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestMetrics:
    """Counts each HTTP request and observes its latency, by method, route and status."""

    def __init__(self, app: ASGIApp, *, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter(
            "remstate_http_requests",
            "HTTP requests served, by method, route template and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "remstate_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template",
            ["method", "route"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "remstate_http_requests_in_flight",
            "HTTP requests being answered now (a graceful shutdown waits for them)",
            registry=registry,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]  # what an exception that escapes every handler becomes

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        self.in_flight.inc()
        try:
            await self.app(scope, receive, sending)
        finally:
            self.in_flight.dec()
            route = _template(scope)
            method = str(scope.get("method", ""))
            if method not in _METHODS:
                method = "other"  # any token is a method to h11: keep the label set bounded
            self.requests.labels(method, route, str(status[0])).inc()
            self.latency.labels(method, route).observe(time.perf_counter() - started)


def _template(scope: dict[str, Any] | Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"
