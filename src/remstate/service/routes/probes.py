"""The probes and the metrics: open to every caller, as a kubelet and Prometheus need.

- ``/healthz`` is liveness: an async route, so it answers when the event loop
  does, and touches nothing else (a slow store must not get the pod killed).
- ``/readyz`` is readiness: the store answers a cheap list (one object,
  metadata only), and each check the authorizer and the leadership add
  passes; the failing ones are named in the body, with 503.
- ``/metrics`` is the registry in Prometheus' text format.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from remstate.schema.naming import managed_selector
from remstate.service.checks import ReadinessCheck, run_checks
from remstate.service.deps import Services, services

__all__ = ["readiness_checks", "router"]

router = APIRouter(tags=["probes"])


def readiness_checks(s: Services) -> list[ReadinessCheck]:
    """The store's check, then the authorizer's and the leadership's."""
    store = s.manager.store

    def reach_store() -> None:
        store.list(label_selector=managed_selector(), limit=1, metadata_only=True)

    return [
        ReadinessCheck("store", reach_store),
        *s.authorizer.readiness_checks(),
        *s.leadership.readiness_checks(),
    ]


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process and its event loop answer."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={503: {"description": "a check failed; the body names it"}},
)
def readyz(s: Services = Depends(services)) -> JSONResponse:  # noqa: B008
    """Readiness: the store is reachable, and every named check passes."""
    results = run_checks(readiness_checks(s))
    failed = [r.name for r in results if not r.ok]
    body: dict[str, Any] = {
        "status": "fail" if failed else "ok",
        "failed": failed,
        "checks": [r.to_dict() for r in results],
    }
    return JSONResponse(body, status_code=503 if failed else 200)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
)
def metrics(request: Request) -> Response:
    """The manager's metrics and the service's requests, in Prometheus' text format."""
    registry = request.app.state.registry
    assert isinstance(registry, CollectorRegistry)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
