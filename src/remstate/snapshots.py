"""Snapshots: immutable copies of a task's head object, taken before a critical operation.

Design constraints (DESIGN.md, "Recovery, snapshots and per-task policy"):

- **A snapshot is verbatim.** Its data is the head's data byte for byte, even
  when the head is corrupt: what a repair cannot keep stays here. The head's
  labels and annotations are kept as JSON in annotations, so a restore puts
  back the object as it was.
- **Immutable.** A snapshot is created once and never replaced; a name taken
  (by a racing snapshot, or an orphan) is skipped, never touched.
- **Owned and labelled.** An ownerReference to the head (the garbage
  collector follows it in a cluster) and the labels ``managed-by``, ``task``
  and ``remstate.io/role=snapshot``, so a task's snapshots are listed by label,
  metadata only. The head's ``remstate.io/segments`` is copied, so cleanup
  treats the segments a snapshot refers to as referenced.
- **Bounded per task.** After a snapshot is taken, the oldest beyond ``keep``
  are deleted, each with a precondition on its uid.

Only the store and the schema below it: no decoding is needed to copy a head.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from remstate.errors import AlreadyExists, InvalidInput, NotFound, RemstateError
from remstate.objects import StoredObject
from remstate.schema import (
    ANNOTATION_SEGMENTS,
    ANNOTATION_SNAPSHOT_KEPT,
    ANNOTATION_SOFT_DELETED_AT,
    ANNOTATION_TASK_ID,
    ANNOTATION_WRITE_ID,
    LABEL_LIFECYCLE,
    LABEL_MANAGED_BY,
    LABEL_ROLE,
    LABEL_TASK,
    LIFECYCLE_ACTIVE,
    MANAGED_BY,
    ROLE_SNAPSHOT,
    decode_state,
    format_ranges,
    format_timestamp,
    label_value,
    object_name,
    owner_reference,
    parse_timestamp,
    snapshot_name,
    task_selector,
)
from remstate.store import Store

__all__ = [
    "ANNOTATION_SNAPSHOT_ANNOTATIONS",
    "ANNOTATION_SNAPSHOT_LABELS",
    "ANNOTATION_SNAPSHOT_REASON",
    "ANNOTATION_SNAPSHOT_TAKEN_AT",
    "ANNOTATION_SNAPSHOT_VERSION",
    "DEFAULT_SNAPSHOTS_KEPT",
    "Snapshot",
    "delete_snapshots",
    "list_snapshots",
    "restored_object",
    "take_snapshot",
]

#: How many snapshots of one task are kept by default (the newest).
DEFAULT_SNAPSHOTS_KEPT = 5

ANNOTATION_SNAPSHOT_VERSION = "remstate.io/snapshot-of-resource-version"
ANNOTATION_SNAPSHOT_REASON = "remstate.io/snapshot-reason"
ANNOTATION_SNAPSHOT_TAKEN_AT = "remstate.io/snapshot-taken-at"
ANNOTATION_SNAPSHOT_LABELS = "remstate.io/snapshot-labels"
ANNOTATION_SNAPSHOT_ANNOTATIONS = "remstate.io/snapshot-annotations"

# Not copied: the write id and a writer's turn are marks of one write, and
# kubectl's last-applied copy of the whole object would not fit in annotations twice.
_NOT_COPIED = frozenset(
    {ANNOTATION_WRITE_ID, "remstate.io/turn", "kubectl.kubernetes.io/last-applied-configuration"}
)
_NUMBER = re.compile(r"-s([0-9]{1,6})$")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One snapshot, as listed (metadata only)."""

    name: str
    number: int
    task_id: str
    #: The head's resourceVersion the snapshot copies.
    of_resource_version: str
    reason: str
    taken_at: datetime | None
    uid: str = ""
    #: Taken before a purge and kept: it outlives the head (see ``take_snapshot``).
    kept: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "number": self.number,
            "task_id": self.task_id,
            "of_resource_version": self.of_resource_version,
            "reason": self.reason,
            "taken_at": None if self.taken_at is None else format_timestamp(self.taken_at),
            "kept": self.kept,
        }

    @classmethod
    def of(cls, obj: StoredObject, number: int) -> Snapshot:
        annotations = obj.annotations
        taken_at: datetime | None
        try:
            taken_at = parse_timestamp(annotations.get(ANNOTATION_SNAPSHOT_TAKEN_AT, ""))
        except InvalidInput:
            taken_at = None  # a hand-edited annotation: still listed
        return cls(
            name=obj.name,
            number=number,
            task_id=annotations.get(ANNOTATION_TASK_ID, ""),
            of_resource_version=annotations.get(ANNOTATION_SNAPSHOT_VERSION, ""),
            reason=annotations.get(ANNOTATION_SNAPSHOT_REASON, ""),
            taken_at=taken_at,
            uid=obj.uid,
            kept=annotations.get(ANNOTATION_SNAPSHOT_KEPT) == "true",
        )


def _number(task_id: str, name: str) -> int | None:
    """The snapshot number in ``name``, if it is one of this task's snapshot names."""
    match = _NUMBER.search(name)
    if match is None or name != snapshot_name(task_id, int(match[1])):
        return None
    return int(match[1])


def _segments_annotation(head: StoredObject) -> str | None:
    """The segment numbers the head refers to: its annotation, or its index read afresh."""
    copied = head.annotations.get(ANNOTATION_SEGMENTS)
    if copied is not None:
        return copied
    try:
        segments = decode_state(head, check=False).segments
    except RemstateError:
        return None  # unreadable: nothing to copy (cleanup waits out its grace period)
    return format_ranges(s.n for s in segments) if segments else None


def _snapshot_object(
    task_id: str, head: StoredObject, n: int, *, reason: str, now: datetime, kept: bool
) -> StoredObject:
    copied = {k: v for k, v in head.annotations.items() if k not in _NOT_COPIED}
    annotations = {
        ANNOTATION_TASK_ID: task_id,
        ANNOTATION_SNAPSHOT_VERSION: head.resource_version,
        ANNOTATION_SNAPSHOT_REASON: reason,
        ANNOTATION_SNAPSHOT_TAKEN_AT: format_timestamp(now),
        ANNOTATION_SNAPSHOT_LABELS: json.dumps(dict(head.labels), sort_keys=True),
        ANNOTATION_SNAPSHOT_ANNOTATIONS: json.dumps(copied, sort_keys=True),
    }
    segments = _segments_annotation(head)
    if segments:
        annotations[ANNOTATION_SEGMENTS] = segments
    if kept:
        annotations[ANNOTATION_SNAPSHOT_KEPT] = "true"
    return StoredObject(
        name=snapshot_name(task_id, n),
        data=dict(head.data or {}),
        labels={
            LABEL_MANAGED_BY: MANAGED_BY,
            LABEL_TASK: label_value(task_id),
            LABEL_ROLE: ROLE_SNAPSHOT,
        },
        annotations=annotations,
        # A kept snapshot outlives its head: an owner would have the GC remove it.
        owner_references=() if kept else (owner_reference(head),),
    )


def take_snapshot(
    store: Store,
    task_id: str,
    head: StoredObject,
    *,
    reason: str,
    now: datetime,
    keep: int = DEFAULT_SNAPSHOTS_KEPT,
    kept: bool = False,
) -> Snapshot:
    """Copy ``head`` (as read, with its data) into a new snapshot; then keep the newest ``keep``.

    The number is one past the newest snapshot listed; a number taken
    meanwhile is skipped. A ``kept`` snapshot (taken before a purge, when
    asked) has no owner, so that it outlives the head, and is never pushed
    out by newer ones: only ``delete_snapshots`` (``delete_state``) removes it.
    Deleting the oldest is best effort: one that cannot be deleted now is
    deleted after the next snapshot.

    Raises:
        InvalidInput: ``head`` came from a metadata-only read, or has no uid.
        StoreError: the snapshot could not be created.
    """
    if head.data is None:
        raise InvalidInput(f"{head.name} was read metadata-only: a snapshot copies its data")
    existing = list_snapshots(store, task_id)
    n = existing[0].number + 1 if existing else 1
    while True:
        try:
            created = store.create(
                _snapshot_object(task_id, head, n, reason=reason, now=now, kept=kept)
            )
        except AlreadyExists:
            n += 1
            continue
        break
    taken = Snapshot.of(created, n)
    _keep_newest(store, [s for s in (taken, *existing) if not s.kept], keep)
    return taken


def _keep_newest(store: Store, snapshots: list[Snapshot], keep: int) -> None:
    ordered = sorted(snapshots, key=lambda s: s.number, reverse=True)
    for old in ordered[keep:]:
        with contextlib.suppress(RemstateError):
            store.delete(old.name, uid=old.uid or None)


def list_snapshots(store: Store, task_id: str) -> list[Snapshot]:
    """The task's snapshots, newest first: by label, page by page, metadata only."""
    found: list[Snapshot] = []
    token: str | None = None
    selector = task_selector(task_id, role=ROLE_SNAPSHOT)
    while True:
        page = store.list(
            label_selector=selector, limit=500, continue_token=token, metadata_only=True
        )
        for obj in page.items:
            n = _number(task_id, obj.name)
            if n is not None:  # the label of a task whose label form collides: not ours
                found.append(Snapshot.of(obj, n))
        token = page.continue_token
        if token is None:
            return sorted(found, key=lambda s: s.number, reverse=True)


def delete_snapshots(store: Store, task_id: str) -> int:
    """Delete every snapshot of the task (each with its uid); how many were deleted."""
    deleted = 0
    for snapshot in list_snapshots(store, task_id):
        try:
            store.delete(snapshot.name, uid=snapshot.uid or None)
        except NotFound:
            continue
        deleted += 1
    return deleted


def restored_object(
    task_id: str, snapshot: StoredObject, current: StoredObject | None
) -> StoredObject:
    """The head to write over ``current`` (a compare-and-swap) to put ``snapshot`` back.

    Its data, labels and annotations as the snapshot copied them; the
    current head's resourceVersion and owners (none, to create it again).

    Raises:
        InvalidInput: ``snapshot`` is not a snapshot of this task, or was read metadata-only.
    """
    if (
        snapshot.labels.get(LABEL_ROLE) != ROLE_SNAPSHOT
        or snapshot.annotations.get(ANNOTATION_TASK_ID) != task_id
        or _number(task_id, snapshot.name) is None
    ):
        raise InvalidInput(f"{snapshot.name} is not a snapshot of task {task_id!r}")
    if snapshot.data is None:
        raise InvalidInput(f"{snapshot.name} was read metadata-only")
    labels = _json_map(snapshot, ANNOTATION_SNAPSHOT_LABELS)
    annotations = _json_map(snapshot, ANNOTATION_SNAPSHOT_ANNOTATIONS)
    # A restore is a use of the task: it comes back active, whatever its state
    # when the snapshot was taken (a snapshot kept at a purge was soft-deleted).
    labels[LABEL_LIFECYCLE] = LIFECYCLE_ACTIVE
    annotations.pop(ANNOTATION_SOFT_DELETED_AT, None)
    return StoredObject(
        name=object_name(task_id),
        data=dict(snapshot.data),
        labels=labels,
        annotations=annotations,
        resource_version="" if current is None else current.resource_version,
        owner_references=() if current is None else current.owner_references,
    )


def _json_map(snapshot: StoredObject, key: str) -> dict[str, str]:
    try:
        value = json.loads(snapshot.annotations.get(key, "{}"))
    except ValueError:
        value = None
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidInput(f"{snapshot.name}: annotation {key} is not a JSON object of strings")
    return dict(value)
