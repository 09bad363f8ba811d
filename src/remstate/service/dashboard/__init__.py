"""The dashboard of ``remstate serve``: server-rendered pages at ``/``, a little script, live.

``install(app)`` adds its pages (``/``, ``/tasks/{id}``), the fragments their
script refreshes (``/ui/...``) and its static files (``/static/...``), all
kept out of the OpenAPI description: the API stays under ``/api/v1``.
"""

from __future__ import annotations

from fastapi import FastAPI

from remstate.service.dashboard.routes import router, static_files

__all__ = ["install"]


def install(app: FastAPI) -> None:
    """Serve the dashboard from ``app``."""
    app.include_router(router)
    app.mount("/static", static_files(), name="dashboard-static")
