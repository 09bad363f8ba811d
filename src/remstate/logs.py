"""Structured log records of cleanup and recovery decisions, through the standard ``logging``.

A convention, not a framework: every decision (a soft delete, a purge, a
restore, a repair, a skip) is one record whose ``extra`` carries the same
fields, so a JSON formatter (python-json-logger, structlog's stdlib bridge)
or a ``logging.Filter`` finds them as attributes of the ``LogRecord``:

- ``action``: what was decided (``soft-delete``, ``purge``, ``restore``, ``repair``, ``skip``);
- ``task``: the task's id;
- ``reason``: why, in a word or two (``expired``, ``active``, ``touched``);
- ``resource_version``: the version of the object the decision was made on;
- any further keyword fields the caller gives (``name``, ``uid``, ``kind``).

The message repeats them for a plain-text log. On the embedded store this
log is where the records that Kubernetes keeps as Events go.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["DECISION_FIELDS", "log_decision"]

#: The ``extra`` fields every decision record carries.
DECISION_FIELDS = ("action", "task", "reason", "resource_version")

# Attributes a LogRecord has of its own: ``extra`` may not set them (logging raises KeyError).
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def log_decision(
    logger: logging.Logger | logging.LoggerAdapter[Any],
    action: str,
    *,
    task: str,
    reason: str,
    resource_version: str | None = None,
    level: int = logging.INFO,
    **fields: Any,
) -> None:
    """Log one decision about a task, with its fields in ``extra``.

    A field whose name a ``LogRecord`` already uses (``name``, ``msg``) is
    logged with a ``remstate_`` prefix rather than refused: a log call must
    not fail the operation it records.
    """
    extra: dict[str, Any] = {
        "action": action,
        "task": task,
        "reason": reason,
        "resource_version": resource_version,
    }
    for key, value in fields.items():
        extra[f"remstate_{key}" if key in _RESERVED else key] = value
    details = "".join(f" {k}={v}" for k, v in fields.items())
    logger.log(
        level,
        "%s task %s: %s (resourceVersion %s)%s",
        action,
        task,
        reason,
        resource_version or "-",
        details,
        extra=extra,
    )
