"""What cleanup does with one head, decided from its metadata alone.

DESIGN.md rule 4 and "Cleanup decides from metadata alone": the scan lists
heads with ``metadata_only``, so a decision may use only labels and
annotations: the ``last-update`` annotation, the status label, the lifecycle
label with the soft-delete time, and the per-task ``ttl`` annotation. What
cannot be read is never a reason to delete: it is an error, and the head is
left alone.

The table, for a head whose last update is older than its ttl ("expired"):

- active, not protected: soft delete (the grace period starts);
- soft-deleted, within the grace period: wait;
- soft-deleted, past the grace period: purge;
- protected (status ``in_progress`` or ``awaiting_review``) and not ``force``:
  skipped, soft-deleted or not.

A soft-deleted head that is no longer expired (a run with a longer ttl, or a
per-task ttl raised by hand) is restored. A soft-deleted head whose
soft-delete time is missing or unreadable is marked again: its grace period
starts now.

Pure functions, no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from remstate.objects import StoredObject
from remstate.schema import (
    ANNOTATION_LAST_UPDATE,
    ANNOTATION_SOFT_DELETED_AT,
    ANNOTATION_TTL,
    LABEL_LIFECYCLE,
    LABEL_STATUS,
    LIFECYCLE_SOFT_DELETED,
    Status,
    format_timestamp,
    last_update_of,
    soft_deleted_at,
    ttl_of,
)
from remstate.schema.durations import format_duration

__all__ = ["ACTIVE_STATUSES", "Action", "Decision", "decide", "task_ttl"]

#: Statuses of a loop that is under way: an agent works on it (``in_progress``)
#: or reviewers hold it (``awaiting_review``). Cleanup leaves them alone unless
#: forced. A review that outlasts the ttl is a human's delay, and purging the
#: loop would lose the iterations the review is about. ``pending`` (never
#: started) and the final statuses are not protected.
ACTIVE_STATUSES = frozenset({Status.IN_PROGRESS.value, Status.AWAITING_REVIEW.value})


class Action(enum.StrEnum):
    """What cleanup does (or, in a dry run, would do) with one head."""

    KEEP = "keep"  # not expired: nothing to do, not reported by name
    WAIT = "wait"  # soft-deleted, within the grace period
    SOFT_DELETE = "soft-delete"
    RESTORE = "restore"
    PURGE = "purge"
    SKIP_ACTIVE = "skip-active"
    ERROR = "error"  # metadata that cannot be read: left alone


@dataclass(frozen=True, slots=True)
class Decision:
    """An action and why, in words for the report, the log and the Event."""

    action: Action
    reason: str


def task_ttl(obj: StoredObject) -> timedelta | None:
    """The head's own ttl (``remstate.io/ttl``, whole seconds), or None when it has none.

    Read by the schema's ``ttl_of``, which takes an unreadable value for no
    ttl. Cleanup is stricter: a task may have meant a longer retention than
    the default, so a value it cannot read is an error and the head is kept.

    Raises:
        ValueError: the annotation is there but is not a positive whole number of
            seconds of at most 100 years.
    """
    raw = obj.annotations.get(ANNOTATION_TTL)
    ttl = ttl_of(obj)
    if raw is not None and ttl is None:
        raise ValueError(f"annotation {ANNOTATION_TTL} is not a ttl in seconds: {raw!r}")
    return ttl


def decide(
    obj: StoredObject, *, now: datetime, ttl: timedelta, grace: timedelta, force: bool
) -> Decision:
    """What to do with the head ``obj`` at ``now``, from its metadata alone.

    ``ttl`` is the default retention; the head's own ttl overrides it. ``force``
    lifts the protection of loops under way.
    """
    last_update = last_update_of(obj)
    if last_update is None:
        raw = obj.annotations.get(ANNOTATION_LAST_UPDATE)
        return Decision(Action.ERROR, f"last update missing or unreadable ({raw!r}): left alone")
    try:
        own_ttl = task_ttl(obj)
    except ValueError as e:
        return Decision(Action.ERROR, f"{e}: left alone")
    retention = own_ttl or ttl
    whose = "the task's own ttl" if own_ttl is not None else "ttl"
    when = f"last update {format_timestamp(last_update)}, {whose} {format_duration(retention)}"
    soft_deleted = obj.labels.get(LABEL_LIFECYCLE) == LIFECYCLE_SOFT_DELETED
    status = obj.labels.get(LABEL_STATUS, "")
    if now - last_update <= retention:
        action = Action.RESTORE if soft_deleted else Action.KEEP
        return Decision(action, f"{'no longer' if soft_deleted else 'not'} expired ({when})")
    if status in ACTIVE_STATUSES and not force:
        return Decision(Action.SKIP_ACTIVE, f"expired but {status} ({when}); use force")
    if not soft_deleted:
        return Decision(Action.SOFT_DELETE, f"expired ({when}); grace {format_duration(grace)}")
    return _after_soft_delete(obj, now=now, grace=grace, when=when)


def _after_soft_delete(
    obj: StoredObject, *, now: datetime, grace: timedelta, when: str
) -> Decision:
    """An expired head that is soft-deleted: wait out the grace period, then purge."""
    marked = soft_deleted_at(obj)
    if marked is None:
        raw = obj.annotations.get(ANNOTATION_SOFT_DELETED_AT)
        return Decision(
            Action.SOFT_DELETE,
            f"soft-delete time missing or unreadable ({raw!r}); the grace period starts again",
        )
    since = f"soft-deleted {format_timestamp(marked)}, grace {format_duration(grace)}"
    if now - marked < grace:
        return Decision(Action.WAIT, f"in the grace period ({since})")
    return Decision(Action.PURGE, f"grace period over ({since}; {when})")
