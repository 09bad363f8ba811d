"""The HTTP service of ``remstate serve``: FastAPI over the manager.

Between the CLI and the manager in the layers. ``create_app`` builds the
application from a manager, an authorizer, a leadership and a metrics
registry; ``remstate.service.server`` runs it under uvicorn.
"""

from __future__ import annotations

from remstate.service.app import API_PREFIX, create_app

__all__ = ["API_PREFIX", "create_app"]
