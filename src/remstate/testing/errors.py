"""The one error of the test harness, shared by its modules."""

from __future__ import annotations

__all__ = ["ControlPlaneError"]


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, found or started."""
