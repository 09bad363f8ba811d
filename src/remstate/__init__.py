"""remstate: the state of agent remediation loops, kept in Kubernetes ConfigMaps."""

from __future__ import annotations

from remstate.errors import RemstateError

__all__ = ["RemstateError"]
__version__ = "0.1.0"
