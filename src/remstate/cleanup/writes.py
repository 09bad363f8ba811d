"""Cleanup's writes, each conditional on the version it decided on, and paced.

The constraint this module lives under (DESIGN.md rule 4): cleanup never
overwrites or deletes a head that changed after it looked.

- The soft-delete and restore marks are one patch of the lifecycle label and
  the soft-delete annotation, carrying the resourceVersion the scan saw: a
  Conflict means someone wrote since, and the head is left as it is.
- A purge reads the head again, checks it is the very object the scan saw
  (uid and resourceVersion), and deletes it with both as preconditions: a
  write that lands between the read and the delete makes the delete fail. Then
  the segments and snapshots that head owned go, each with its uid.

Every request takes a token of the run's rate limiter first, and is retried
on transient failures by the retry policy; a Conflict is never retried here,
since it is the answer. Each function says what happened as an ``Outcome``;
the run counts, logs and reports it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from remstate.cleanup.decisions import Action
from remstate.cleanup.report import GONE, SKIPPED_TOUCHED
from remstate.errors import Conflict, InvalidInput, NotFound, RemstateError, StateNotFound
from remstate.objects import ObjectList, StoredObject
from remstate.retry import RetryPolicy
from remstate.schema import (
    ANNOTATION_SEGMENTS,
    ANNOTATION_SOFT_DELETED_AT,
    LABEL_LIFECYCLE,
    LABEL_MANAGED_BY,
    LABEL_ROLE,
    LABEL_TASK,
    LIFECYCLE_ACTIVE,
    LIFECYCLE_SOFT_DELETED,
    MANAGED_BY,
    ROLE_SEGMENT,
    ROLE_SNAPSHOT,
    format_timestamp,
    object_name,
    parse_ranges,
    validate_task_id,
)
from remstate.store import Store

__all__ = [
    "Outcome",
    "Requests",
    "Snapshotter",
    "lift_soft_delete",
    "purge",
    "restore_task",
    "soft_delete",
]

log = logging.getLogger("remstate.cleanup")

_T = TypeVar("_T")

#: Takes a snapshot of a head about to be purged and returns the snapshot's name.
Snapshotter = Callable[[StoredObject], str]


class _Refused(Exception):
    """Carries a Conflict through the retry policy, which must not retry it."""

    def __init__(self, conflict: Conflict) -> None:
        super().__init__(str(conflict))
        self.conflict = conflict


class Requests:
    """The store, behind the run's rate limiter and retry policy."""

    def __init__(self, store: Store, *, retry: RetryPolicy, pace: Callable[[], None]) -> None:
        self.store = store
        self.retry = retry
        self.pace = pace

    def call(self, fn: Callable[[], _T]) -> _T:
        """One paced request, retried on transient failures; a Conflict is raised at once."""

        def attempt() -> _T:
            self.pace()
            try:
                return fn()
            except Conflict as e:
                raise _Refused(e) from e

        try:
            return self.retry.call(attempt)
        except _Refused as e:
            raise e.conflict from None

    def page(self, selector: str, token: str | None, limit: int) -> ObjectList:
        """One metadata-only page of the objects ``selector`` matches."""
        return self.call(
            lambda: self.store.list(
                label_selector=selector, limit=limit, continue_token=token, metadata_only=True
            )
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a write did: the action (as decided, or ``skip-touched``, ``gone``) and on what.

    ``obj`` is the head as written (or as last seen); ``note`` adds to the reason.
    """

    action: str
    obj: StoredObject
    note: str = ""


def soft_delete(requests: Requests, obj: StoredObject, *, now: datetime) -> Outcome:
    """Mark the head soft-deleted at ``now``, if it is still at the scan's version."""
    marks = {ANNOTATION_SOFT_DELETED_AT: format_timestamp(now)}
    return _mark(requests, obj, marks, LIFECYCLE_SOFT_DELETED, Action.SOFT_DELETE)


def lift_soft_delete(requests: Requests, obj: StoredObject) -> Outcome:
    """Make the head active again, if it is still at the scan's version."""
    marks = {ANNOTATION_SOFT_DELETED_AT: None}
    return _mark(requests, obj, marks, LIFECYCLE_ACTIVE, Action.RESTORE)


def _mark(
    requests: Requests,
    obj: StoredObject,
    annotations: Mapping[str, str | None],
    lifecycle: str,
    action: str,
) -> Outcome:
    """One patch of the lifecycle, conditional on the scan's resourceVersion.

    A patch whose answer was lost and that is retried conflicts with itself
    and is reported as touched: the next run sees what it did.
    """
    try:
        marked = requests.call(
            lambda: requests.store.annotate(
                obj.name,
                annotations,
                labels={LABEL_LIFECYCLE: lifecycle},
                resource_version=obj.resource_version,
            )
        )
    except Conflict:
        return Outcome(SKIPPED_TOUCHED, obj, "changed since the scan: left as it is")
    except NotFound:
        return Outcome(GONE, obj, "deleted by someone else since the scan")
    return Outcome(action, marked)


def purge(
    requests: Requests, obj: StoredObject, *, page_size: int, snapshot: Snapshotter | None
) -> Outcome:
    """Re-read the head, check it is the one the scan saw, delete it conditionally, then its parts.

    ``snapshot``, when given, copies the head just read before it is deleted;
    that snapshot is kept.
    """
    try:
        fresh = requests.call(lambda: requests.store.get(obj.name))
    except NotFound:
        return Outcome(GONE, obj, "deleted by someone else since the scan")
    if (fresh.uid, fresh.resource_version) != (obj.uid, obj.resource_version):
        active = fresh.labels.get(LABEL_LIFECYCLE) != LIFECYCLE_SOFT_DELETED
        return Outcome(
            SKIPPED_TOUCHED,
            fresh,
            f"changed since the scan (resourceVersion {obj.resource_version} -> "
            f"{fresh.resource_version}{', active again' if active else ''}): it survives",
        )
    kept = snapshot(fresh) if snapshot is not None else None
    try:
        requests.call(
            lambda: requests.store.delete(
                fresh.name, uid=fresh.uid, resource_version=fresh.resource_version
            )
        )
    except Conflict:
        _drop_kept(requests, kept)
        return Outcome(
            SKIPPED_TOUCHED,
            fresh,
            "written after the purge read it: the delete's precondition failed; it survives",
        )
    except NotFound:
        _drop_kept(requests, kept)
        return Outcome(GONE, fresh, "deleted by someone else since the purge read it")
    _remove_parts(requests, fresh, keep=kept, page_size=page_size)
    return Outcome(Action.PURGE, fresh, "" if kept is None else f"; snapshot {kept} kept")


def _kept_segment(obj: StoredObject, head: StoredObject, kept: frozenset[int] | None) -> bool:
    """Whether ``obj`` is a segment of ``head`` that a kept snapshot refers to."""
    if obj.labels.get(LABEL_ROLE) != ROLE_SEGMENT:
        return False
    if kept is None:
        return True
    suffix = obj.name.removeprefix(head.name + "-h")
    return suffix.isdigit() and int(suffix) in kept


def _drop_kept(requests: Requests, kept: str | None) -> None:
    """The snapshot taken for a purge that did not happen: the task lives on, so it goes."""
    if kept is None:
        return
    with contextlib.suppress(RemstateError):
        requests.call(lambda: requests.store.delete(kept))


def _remove_parts(
    requests: Requests, head: StoredObject, *, keep: str | None, page_size: int
) -> None:
    """Delete the purged head's segments and snapshots: those it owns (by uid).

    A new head of the same task, created since, owns its own objects, which
    stay. With a snapshot kept (``keep``), the segments it refers to stay too:
    restoring it needs them (they go with the kept snapshot, as orphans, once
    it is deleted). Best effort: what is left is an orphan, which orphan
    removal takes.
    """
    task_label = head.labels.get(LABEL_TASK)
    if not task_label:
        return
    kept_segments: frozenset[int] | None = frozenset()
    if keep is not None:
        text = head.annotations.get(ANNOTATION_SEGMENTS)
        try:
            kept_segments = None if text is None else parse_ranges(text)
        except InvalidInput:
            kept_segments = None  # cannot tell: keep them all
    selector = f"{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_TASK}={task_label}"
    token: str | None = None
    try:
        while True:
            page = requests.page(selector, token, page_size)
            for obj in page.items:
                if (
                    obj.labels.get(LABEL_ROLE) in (ROLE_SEGMENT, ROLE_SNAPSHOT)
                    and obj.name != keep
                    and any(ref.uid == head.uid for ref in obj.owner_references)
                    and not _kept_segment(obj, head, kept_segments)
                ):
                    _delete_part(requests, obj)
            token = page.continue_token
            if token is None:
                return
    except RemstateError as e:
        log.warning(
            "cleanup: %s's segments and snapshots not all removed (%s); "
            "orphan removal will take them",
            head.name,
            e,
        )


def _delete_part(requests: Requests, obj: StoredObject) -> None:
    try:
        requests.call(lambda: requests.store.delete(obj.name, uid=obj.uid))
    except (NotFound, Conflict):
        return  # gone already, or a new object of that name: not ours
    log.info("cleanup: %s deleted with its head", obj.name)


def restore_task(
    store: Store, task_id: str, *, retry: RetryPolicy
) -> tuple[StoredObject, StoredObject | None]:
    """Lift the task's soft delete: (the head as read, the head restored, or None if active).

    A compare-and-swap: the patch carries the resourceVersion just read, and
    is retried on a fresh read after a Conflict. Not paced: one task, by request.

    Raises:
        StateNotFound: the task has no state.
        InvalidInput: a bad task ID.
    """
    validate_task_id(task_id)
    name = object_name(task_id)

    def attempt() -> tuple[StoredObject, StoredObject | None]:
        try:
            obj = store.get(name)
        except NotFound:
            raise StateNotFound(task_id) from None
        if (
            obj.labels.get(LABEL_LIFECYCLE) != LIFECYCLE_SOFT_DELETED
            and ANNOTATION_SOFT_DELETED_AT not in obj.annotations
        ):
            return obj, None
        restored = store.annotate(
            name,
            {ANNOTATION_SOFT_DELETED_AT: None},
            labels={LABEL_LIFECYCLE: LIFECYCLE_ACTIVE},
            resource_version=obj.resource_version,
        )
        return obj, restored

    return retry.call(attempt)
