"""The Kubernetes backend's Events: what cleanup and recovery did, shown by kubectl.

The constraint this module lives under: **an Event never fails the operation
it reports.** The operation is done when the Event is written; an operator
without the right to create Events, or a server that is down or hung, costs at
most one short-timed request (never past the running retry policy's deadline)
and a log line. So :func:`record_event` catches
everything (the one place in the backend that does), logs it and returns.

The Event is an ``events.k8s.io/v1`` Event regarding the ConfigMap, written
through the generated ``EventsV1Api`` on the store's own client: unlike the
ConfigMaps' requests, nothing here needs a header or a parser of its own.
``kubectl describe cm NAME`` lists it under "Events", ``kubectl get events``
with its reason and note.
"""

from __future__ import annotations

import logging
import socket
import time
from datetime import UTC, datetime
from typing import Any, Final

from kubernetes import client as k8s

from remstate.objects import StoredObject
from remstate.retry import remaining

__all__ = [
    "EVENT_TIMEOUT",
    "REPORTING_CONTROLLER",
    "event_body",
    "event_name",
    "record_event",
]

log = logging.getLogger("remstate.events")

#: The Event's ``reportingController``: who wrote it.
REPORTING_CONTROLLER: Final = "remstate.io/remstate"
#: (connect, read) seconds an Event may take: a hung server holds the operation no longer.
EVENT_TIMEOUT: Final = (2.0, 3.0)
#: The API server's limits on an Event's fields (events.k8s.io/v1 validation).
_MAX_NOTE_BYTES: Final = 1024
_MAX_FIELD: Final = 128
_MAX_NAME: Final = 253


def _clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` bytes of UTF-8, never inside a character."""
    return text.encode()[:limit].decode(errors="ignore")


def event_name(obj_name: str, now_ns: int) -> str:
    """As client-go's recorder names Events: the object's name and the time in hex nanoseconds."""
    suffix = f".{now_ns:x}"
    return obj_name[: _MAX_NAME - len(suffix)] + suffix


def event_body(
    obj: StoredObject,
    *,
    namespace: str,
    reason: str,
    message: str,
    type: str,  # noqa: A002 - the Event's own field name
    action: str,
    now_ns: int,
    instance: str,
) -> Any:
    """The ``EventsV1Event`` for ``obj`` at ``now_ns`` (nanoseconds since the epoch); no request."""
    return k8s.EventsV1Event(
        metadata=k8s.V1ObjectMeta(name=event_name(obj.name, now_ns), namespace=namespace),
        # A MicroTime: the client sends it as RFC 3339 with microseconds.
        event_time=datetime.fromtimestamp(now_ns / 1e9, UTC),
        reporting_controller=REPORTING_CONTROLLER,
        reporting_instance=_clip(instance, _MAX_FIELD) or "unknown",
        action=_clip(action or reason, _MAX_FIELD),
        reason=_clip(reason, _MAX_FIELD),
        note=_clip(message, _MAX_NOTE_BYTES),
        type=type,
        regarding=k8s.V1ObjectReference(
            api_version="v1",
            kind="ConfigMap",
            name=obj.name,
            namespace=namespace,
            uid=obj.uid or None,
            resource_version=obj.resource_version or None,
        ),
    )


def record_event(
    api_client: Any,
    namespace: str,
    obj: StoredObject,
    *,
    reason: str,
    message: str,
    type: str = "Normal",  # noqa: A002 - the Event's own field name
    action: str = "",
) -> None:
    """Create the Event regarding ``obj``; log and swallow any failure."""
    try:
        body = event_body(
            obj,
            namespace=namespace,
            reason=reason,
            message=message,
            type=type,
            action=action,
            now_ns=time.time_ns(),
            instance=socket.gethostname(),
        )
        k8s.EventsV1Api(api_client).create_namespaced_event(
            namespace, body, _request_timeout=_timeouts()
        )
    # Anything at all: the client's ApiException, urllib3's and socket errors, a
    # refused field. The operation the Event reports has happened regardless.
    except Exception as e:  # noqa: BLE001
        log.warning(
            "event not recorded on configmaps %r (%s: %s): %s",
            obj.name,
            reason,
            message,
            _short(e),
            extra={"object": obj.name, "reason": reason, "event_error": e.__class__.__name__},
        )


def _timeouts() -> tuple[float, float]:
    """EVENT_TIMEOUT, capped at what is left of the running retry policy's deadline."""
    left = remaining()
    if left is None:
        return EVENT_TIMEOUT
    if left <= 0:
        raise TimeoutError("the retry deadline passed before the Event was sent")
    connect, read = EVENT_TIMEOUT
    return min(connect, left), min(read, left)


def _short(error: BaseException) -> str:
    """One line: the HTTP status and reason of an ApiException, else the error's first line."""
    status = getattr(error, "status", None)
    text = str(getattr(error, "reason", None) or error)
    line = text.splitlines()[0] if text else type(error).__name__
    return f"{status} {line}" if status else line
