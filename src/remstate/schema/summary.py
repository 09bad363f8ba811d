"""A task's summary for listings (``remstate ls``, the HTTP list), from its head's metadata.

Design constraint: a listing of thousands of tasks must not transfer their
data (a head holds up to 768 KiB). So every field a summary shows is kept
current in the head's labels and annotations on every write
(``encoding._state_metadata``): the status and lifecycle labels, and the task
ID, last update, iteration counter, iteration limit, ttl and soft-delete
annotations. A listing asks the store for metadata only and summarises each
head with :func:`summarize`.

A head that does not carry them all (written before the iteration annotation
existed, or whose status is unknown here, so that its label holds a mapped
form) gets ``None`` from :func:`summarize`; the caller reads that one head with
its data and summarises it with :func:`summarize_head`, which decodes only the
plain ``iteration``, ``status`` and ``last_update`` keys, never the history.

Lenient, as every reader of stored data: an unreadable value is ``None`` in
the summary, never an exception (DESIGN.md rule 5).

Pure functions, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from remstate.errors import InvalidInput
from remstate.objects import StoredObject
from remstate.schema.layout import last_update_of, soft_deleted_at, ttl_of
from remstate.schema.naming import (
    ANNOTATION_ITERATION,
    ANNOTATION_MAX_ITERATIONS,
    ANNOTATION_TASK_ID,
    LABEL_LIFECYCLE,
    LABEL_STATUS,
    LIFECYCLE_ACTIVE,
    LIFECYCLE_SOFT_DELETED,
)
from remstate.schema.policy import MAX_ITERATIONS_LIMIT
from remstate.schema.values import Status, format_timestamp, parse_timestamp

__all__ = ["StatePage", "StateSummary", "summarize", "summarize_head"]

_KNOWN_STATUSES = frozenset(str(s) for s in Status)


@dataclass(frozen=True, slots=True)
class StateSummary:
    """One task as a listing shows it.

    Attributes:
        task_id: the task's own ID.
        name: the head object's name.
        status: the task's status.
        iteration: the iteration counter; ``None`` if the head's is unreadable.
        max_iterations: the task's stored limit, or the lister's default when
            it stores none (``max_iterations_stored`` says which).
        last_update: the last write; ``None`` if unreadable.
        lifecycle: ``"active"`` or ``"soft-deleted"``.
        soft_deleted_at: when it was soft-deleted (``None`` when active).
        ttl: the task's own retention, ``None`` for the cleanup's default.
        resource_version: the head's resourceVersion (an ETag).
    """

    task_id: str
    name: str
    status: str
    iteration: int | None
    max_iterations: int
    max_iterations_stored: bool
    last_update: datetime | None
    lifecycle: str
    soft_deleted_at: datetime | None
    ttl: timedelta | None
    resource_version: str

    def to_dict(self) -> dict[str, Any]:
        """As JSON: timestamps in RFC 3339, the ttl in seconds."""
        return {
            "task_id": self.task_id,
            "name": self.name,
            "status": self.status,
            "iteration": self.iteration,
            "max_iterations": self.max_iterations,
            "max_iterations_stored": self.max_iterations_stored,
            "last_update": _timestamp(self.last_update),
            "lifecycle": self.lifecycle,
            "soft_deleted_at": _timestamp(self.soft_deleted_at),
            "ttl_seconds": None if self.ttl is None else int(self.ttl.total_seconds()),
            "resource_version": self.resource_version,
        }


@dataclass(frozen=True, slots=True)
class StatePage:
    """One page of a listing. ``next_cursor`` is ``None`` on the last page; pass it
    back as ``cursor`` to read on (it is the store's continue token: opaque)."""

    summaries: list[StateSummary]
    next_cursor: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "tasks": [s.to_dict() for s in self.summaries],
            "next_cursor": self.next_cursor,
        }


def _timestamp(value: datetime | None) -> str | None:
    return None if value is None else format_timestamp(value)


def _count(raw: str | None, *, high: int) -> int | None:
    """A stored counter (decimal digits, at most ``high``), or None."""
    if raw is None or not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        return None
    value = int(raw)
    return value if value <= high else None


def summarize(obj: StoredObject, *, default_max_iterations: int) -> StateSummary | None:
    """The summary of a head from its metadata alone; ``None`` if that does not hold it all.

    ``default_max_iterations``: shown for a task that stores no limit (its
    writers use their own default; this is the lister's).
    """
    status = obj.labels.get(LABEL_STATUS, "")
    iteration = obj.annotations.get(ANNOTATION_ITERATION)
    if (
        status not in _KNOWN_STATUSES
        or iteration is None
        or last_update_of(obj) is None
        or not obj.annotations.get(ANNOTATION_TASK_ID)
    ):
        return None
    return _summary(
        obj,
        status=status,
        iteration=_count(iteration, high=MAX_ITERATIONS_LIMIT),
        last_update=last_update_of(obj),
        default_max_iterations=default_max_iterations,
    )


def summarize_head(obj: StoredObject, *, default_max_iterations: int) -> StateSummary:
    """The summary of a head read with its data: its metadata, and for what that lacks,
    the plain ``iteration``, ``status`` and ``last_update`` data keys (nothing else decoded).
    """
    data = obj.data or {}
    status = data.get("status")
    if not isinstance(status, str):
        status = obj.labels.get(LABEL_STATUS, "")
    iteration = _count(data.get("iteration"), high=MAX_ITERATIONS_LIMIT)
    if iteration is None:
        iteration = _count(obj.annotations.get(ANNOTATION_ITERATION), high=MAX_ITERATIONS_LIMIT)
    last_update = last_update_of(obj)
    if last_update is None:
        try:
            last_update = parse_timestamp(data.get("last_update"))
        except InvalidInput:
            last_update = None
    task_id = obj.annotations.get(ANNOTATION_TASK_ID) or data.get("task_id") or obj.name
    return _summary(
        obj,
        task_id=task_id,
        status=status,
        iteration=iteration,
        last_update=last_update,
        default_max_iterations=default_max_iterations,
    )


def _summary(
    obj: StoredObject,
    *,
    status: str,
    iteration: int | None,
    last_update: datetime | None,
    default_max_iterations: int,
    task_id: str | None = None,
) -> StateSummary:
    stored = _count(obj.annotations.get(ANNOTATION_MAX_ITERATIONS), high=MAX_ITERATIONS_LIMIT)
    soft = obj.labels.get(LABEL_LIFECYCLE) == LIFECYCLE_SOFT_DELETED
    return StateSummary(
        task_id=task_id or obj.annotations.get(ANNOTATION_TASK_ID) or obj.name,
        name=obj.name,
        status=status,
        iteration=iteration,
        max_iterations=stored or default_max_iterations,
        max_iterations_stored=bool(stored),
        last_update=last_update,
        lifecycle=LIFECYCLE_SOFT_DELETED if soft else LIFECYCLE_ACTIVE,
        soft_deleted_at=soft_deleted_at(obj),
        ttl=ttl_of(obj),
        resource_version=obj.resource_version,
    )
