"""Validation, repair and restore of a task's state (DESIGN.md rule 5).

Design constraints:

- **Validation is a report, not an exception.** ``validate_state`` reads the
  head and every segment its index names, and returns each problem with its
  kind, data key, detail and whether a repair fixes it. It never raises on
  data and writes nothing.
- **A snapshot before every repair or restore** (``remstate.snapshots``):
  the object as read, verbatim. What a repair cannot keep stays there, and
  the report names it.
- **A repair is a compare-and-swap** on the resourceVersion it read, like every
  write: on a Conflict it reads again, validates again and repairs again, so
  a writer racing it never loses its write. The repair itself is pure
  (``remstate.schema.repair``).
- **A newer remstate's state is never repaired**: reported unsupported, left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from remstate.errors import Conflict, InvalidInput, InvalidObject, NotFound, StateNotFound
from remstate.metrics import Metrics
from remstate.objects import StoredObject
from remstate.retry import RetryPolicy
from remstate.schema import (
    LABEL_MANAGED_BY,
    Clock,
    Problem,
    ProblemCode,
    encode_state,
    object_name,
    segment_name,
    soft_deleted_at,
)
from remstate.schema.repair import (
    Loss,
    Prepared,
    Repair,
    finish,
    prepare,
    problems_of,
    repairable,
    segment_problems,
)
from remstate.snapshots import Snapshot, restored_object, take_snapshot
from remstate.store import Store

__all__ = [
    "Finding",
    "RecoveryReport",
    "RestoreReport",
    "ValidationReport",
    "recover_state",
    "restore_snapshot",
    "validate_state",
]

log = logging.getLogger("remstate.recovery")


class Settings(Protocol):
    """What recovery reads from its manager."""

    store: Store
    retry: RetryPolicy
    clock: Clock
    snapshots_kept: int


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem of a stored state: its kind, data key and detail, and whether it is repairable.

    A problem inside a history segment has the segment's name before its key
    (``task-42-state-h3:feedback_history[2]``).
    """

    kind: ProblemCode
    key: str
    detail: str
    repairable: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "key": self.key,
            "detail": self.detail,
            "repairable": self.repairable,
        }


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """What ``validate_state`` found. ``supported`` is False for a newer remstate's state."""

    task_id: str
    name: str
    resource_version: str
    supported: bool
    problems: tuple[Finding, ...] = ()

    @property
    def ok(self) -> bool:
        """No problem at all."""
        return not self.problems

    @property
    def repairable(self) -> bool:
        """Some problem that a repair fixes."""
        return self.supported and any(p.repairable for p in self.problems)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "name": self.name,
            "resource_version": self.resource_version,
            "supported": self.supported,
            "ok": self.ok,
            "problems": [p.to_dict() for p in self.problems],
        }


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What ``recover_state`` found, repaired and could not keep, and the snapshot taken first.

    ``validation`` is the report on the state it repaired (after a Conflict,
    the one it read last). ``lost`` names what is not in the repaired state;
    each is in ``snapshot``. ``remaining``: problems no repair fixes.
    """

    validation: ValidationReport
    repaired: tuple[Repair, ...] = ()
    lost: tuple[Loss, ...] = ()
    snapshot: str | None = None
    #: The head's resourceVersion after the repair (None: nothing was written).
    resource_version: str | None = None
    remaining: tuple[Finding, ...] = ()

    @property
    def written(self) -> bool:
        return self.resource_version is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.validation.to_dict(),
            "repaired": [r.to_dict() for r in self.repaired],
            "lost": [x.to_dict() for x in self.lost],
            "snapshot": self.snapshot,
            "written": self.written,
            "new_resource_version": self.resource_version,
            "remaining": [p.to_dict() for p in self.remaining],
        }


@dataclass(frozen=True, slots=True)
class RestoreReport:
    """A restore: the snapshot put back, the snapshot taken of the head first, the new version."""

    task_id: str
    restored: str
    snapshot: str | None
    resource_version: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "restored": self.restored,
            "snapshot": self.snapshot,
            "resource_version": self.resource_version,
        }


def _get(settings: Settings, name: str) -> StoredObject | None:
    try:
        return settings.retry.call(lambda: settings.store.get(name))
    except NotFound:
        return None


def _read_objects(settings: Settings, names: Iterable[str]) -> dict[str, StoredObject | None]:
    """Each object by name, as read; None when there is none by that name.

    A damaged index may name what no object can be named (``a/b``): the store
    refuses the read, and the segment counts as missing.
    """
    found: dict[str, StoredObject | None] = {}
    for name in names:
        try:
            found[name] = _get(settings, name)
        except (InvalidObject, InvalidInput):
            found[name] = None
    return found


def _validate(
    settings: Settings, task_id: str, obj: StoredObject
) -> tuple[ValidationReport, Prepared, Mapping[str, StoredObject | None], list[Problem]]:
    """The report on ``obj``, the prepared repair, the segments read, the problems."""
    problems = problems_of(obj)
    supported = not any(p.code == ProblemCode.UNSUPPORTED_SCHEMA_VERSION for p in problems)
    prepared = prepare(obj, task_id, now=settings.clock())
    segments: Mapping[str, StoredObject | None] = {}
    if supported and prepared.state is not None:
        segments = _read_objects(settings, [s.name for s in prepared.state.segments])
        problems.extend(segment_problems(task_id, prepared.state.segments, segments))
    report = ValidationReport(
        task_id=task_id,
        name=obj.name,
        resource_version=obj.resource_version,
        supported=supported,
        problems=tuple(
            Finding(p.code, p.field, p.message, supported and repairable(p)) for p in problems
        ),
    )
    return report, prepared, segments, problems


def validate_state(settings: Settings, task_id: str) -> ValidationReport:
    """Every problem of the task's stored state, and of the segments it names; writes nothing.

    Raises:
        StateNotFound: the task has no state. (Never on its data.)
    """
    obj = _get(settings, object_name(task_id))
    if obj is None:
        raise StateNotFound(task_id)
    return _validate(settings, task_id, obj)[0]


def recover_state(
    settings: Settings, task_id: str, *, metrics: Metrics | None = None
) -> RecoveryReport:
    """Snapshot, then repair the task's state with a compare-and-swap; the report.

    Nothing is written when there is nothing to repair, or the state was
    written by a newer remstate (``validation.supported`` is False).

    Raises:
        StateNotFound: the task has no state.
        StoreError: the snapshot or the write failed (retries are the policy's).
    """
    name = object_name(task_id)
    snapped: dict[str, Snapshot] = {}  # by the head's resourceVersion: one per version read
    repaired_heads: list[StoredObject] = []  # the head as the repair wrote it

    def attempt() -> RecoveryReport:
        obj = _get(settings, name)
        if obj is None:
            raise StateNotFound(task_id)
        report, prepared, segments, problems = _validate(settings, task_id, obj)
        if not report.repairable:
            return RecoveryReport(report, remaining=report.problems)
        # The index could not be read: the segments the head said it refers to.
        named = _read_objects(settings, [segment_name(task_id, n) for n in prepared.rebuild_from])
        rebuild = [segment for segment in named.values() if segment is not None]
        result = finish(prepared, segments, problems, rebuild)
        if result.state is None:
            return RecoveryReport(report, remaining=report.problems)
        snapshot = snapped.get(obj.resource_version)
        if snapshot is None:
            snapshot = take_snapshot(
                settings.store,
                task_id,
                obj,
                reason="recover",
                now=settings.clock(),
                keep=settings.snapshots_kept,
            )
            snapped[obj.resource_version] = snapshot
        data, labels, annotations = encode_state(result.state, soft_deleted_at=soft_deleted_at(obj))
        repaired = StoredObject(
            name=name,
            data=data,
            labels={**_foreign(obj.labels), **labels},
            annotations={**_foreign(obj.annotations), **annotations},
            resource_version=obj.resource_version,
            owner_references=obj.owner_references,
        )
        try:
            # A Conflict: a writer got in first; the policy reads, validates and repairs again.
            written = settings.store.replace(repaired)
        except NotFound:
            raise StateNotFound(task_id) from None
        repaired_heads[:] = [written]
        remaining = tuple(
            Finding(p.code, p.field, p.message, repairable(p)) for p in result.remaining
        )
        return RecoveryReport(
            report,
            result.repairs,
            result.losses,
            snapshot.name,
            written.resource_version,
            remaining,
        )

    report = settings.retry.call(attempt)
    _record(report, metrics)
    if repaired_heads and report.repaired:
        _event(settings, repaired_heads[0], report)
    return report


def _event(settings: Settings, head: StoredObject, report: RecoveryReport) -> None:
    """The repair as an Event on the head (Kubernetes) or a log record (embedded); never raises."""
    kinds = sorted({str(r.kind) for r in report.repaired})
    message = (
        f"Repaired by remstate: {len(report.repaired)} problem(s) ({', '.join(kinds)}); "
        f"the original is in snapshot {report.snapshot}"
    )
    if report.lost:
        message += f"; {len(report.lost)} value(s) could not be kept and stay in the snapshot"
    settings.store.record_event(
        head,
        reason="Repaired",
        message=message,
        type="Warning" if report.lost else "Normal",
        action="Repair",
    )


def _record(report: RecoveryReport, metrics: Metrics | None) -> None:
    """Log each repair and loss (structured), and count repairs by kind."""
    for repair in report.repaired:
        log.info(
            "repaired %s of task %s: %s",
            repair.key,
            report.validation.task_id,
            repair.detail,
            extra={
                "task": report.validation.task_id,
                "problem": str(repair.kind),
                "key": repair.key,
                "resource_version": report.validation.resource_version,
                "snapshot": report.snapshot,
            },
        )
        if metrics is not None:
            metrics.repairs.labels(kind=str(repair.kind)).inc()
    for loss in report.lost:
        log.warning(
            "not kept in task %s: %s: %s (in snapshot %s)",
            report.validation.task_id,
            loss.key,
            loss.detail,
            report.snapshot,
            extra={
                "task": report.validation.task_id,
                "key": loss.key,
                "resource_version": report.validation.resource_version,
                "snapshot": report.snapshot,
            },
        )


def restore_snapshot(settings: Settings, task_id: str, snapshot_name: str) -> RestoreReport:
    """Put a snapshot back as the task's head: a snapshot of the head first, then a CAS.

    Raises:
        NotFound: there is no such snapshot.
        InvalidInput: the object is not a snapshot of this task.
    """
    name = object_name(task_id)
    source = _get(settings, snapshot_name)
    if source is None:
        raise NotFound(f"no snapshot {snapshot_name!r} of task {task_id!r}")
    snapped: dict[str, Snapshot] = {}

    def attempt() -> RestoreReport:
        current = _get(settings, name)
        if current is None:
            restored = restored_object(task_id, source, None)
            written = settings.store.create(restored)
            return RestoreReport(task_id, snapshot_name, None, written.resource_version)
        restored = restored_object(task_id, source, current)  # refuses a foreign object first
        taken = snapped.get(current.resource_version)
        if taken is None:
            taken = take_snapshot(
                settings.store,
                task_id,
                current,
                reason=f"restore {snapshot_name}",
                now=settings.clock(),
                keep=settings.snapshots_kept,
            )
            snapped[current.resource_version] = taken
        try:
            written = settings.store.replace(restored)
        except NotFound:
            raise Conflict(f"{name} was deleted meanwhile") from None
        return RestoreReport(task_id, snapshot_name, taken.name, written.resource_version)

    report = settings.retry.call(attempt)
    log.info(
        "restored task %s from %s",
        task_id,
        snapshot_name,
        extra={
            "task": task_id,
            "snapshot": report.snapshot,
            "resource_version": report.resource_version,
        },
    )
    return report


def _foreign(meta: Mapping[str, str]) -> dict[str, str]:
    """Labels or annotations that remstate does not own (as the writer carries them over)."""
    return {
        k: v for k, v in meta.items() if not k.startswith("remstate.io/") and k != LABEL_MANAGED_BY
    }
