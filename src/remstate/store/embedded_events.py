"""The embedded store's Events: the same records as the Kubernetes Events, as log records.

With no API server to hold Events, each goes to the ``remstate.events``
logger, at INFO (WARNING for a ``Warning`` event), with the Event's fields as
the record's attributes (``extra``), so a structured handler (JSON logs,
structlog's stdlib bridge) prints them as fields. Like the Kubernetes
backend's, it never raises: logging's own handlers swallow their errors.
"""

from __future__ import annotations

import logging

from remstate.objects import StoredObject

__all__ = ["log_event"]

log = logging.getLogger("remstate.events")


def log_event(
    namespace: str,
    obj: StoredObject,
    *,
    reason: str,
    message: str,
    type: str = "Normal",  # noqa: A002 - the Event's own field name
    action: str = "",
) -> None:
    """Log the Event regarding ``obj`` to ``remstate.events``."""
    level = logging.WARNING if type == "Warning" else logging.INFO
    fields = {
        "event_type": type,
        "reason": reason,
        "action": action or reason,
        "note": message,
        "object": obj.name,
        "namespace": namespace,
        "uid": obj.uid,
        "resource_version": obj.resource_version,
    }
    # Anything a handler or a filter raises stays here (a caller's odd handler included).
    try:
        log.log(level, "%s configmaps %s: %s", reason, obj.name, message, extra=fields)
    except Exception:
        logging.getLogger(__name__).debug("event not logged", exc_info=True)
