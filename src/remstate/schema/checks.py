"""The consistency checks of a decoded head: what the validator reports, and a reader refuses.

Each check reads the head alone (never a segment), so its cost does not grow
with the history. ``decode_state`` refuses the problems a write would carry
forward (:func:`refuse_inconsistent`); the validator reports them all
(:func:`cross_check`).

Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

from remstate.errors import CorruptState, InvalidInput
from remstate.objects import StoredObject
from remstate.schema.index import (
    SegmentRef,
)
from remstate.schema.layout import KEY_FEEDBACK_RESOLUTIONS, KEY_HISTORY_INDEX, last_update_of
from remstate.schema.naming import (
    ANNOTATION_ITERATION,
    ANNOTATION_LAST_UPDATE,
    ANNOTATION_MAX_ITERATIONS,
    ANNOTATION_TASK_ID,
    ANNOTATION_TTL,
    object_name,
    segment_name,
)
from remstate.schema.problems import Problem, ProblemCode
from remstate.schema.records import (
    record_id,
)
from remstate.schema.state import (
    TaskState,
)
from remstate.schema.values import (
    format_timestamp,
)

_T = TypeVar("_T")


def refuse_inconsistent(obj: StoredObject, state: TaskState) -> None:
    """Raise ``CorruptState`` if ``state`` breaks an invariant every write keeps.

    These are the validator's checks whose failure a write would carry
    forward: a counter behind its records lets increments pass the maximum; a
    duplicate ID is returned for the wrong entry; another task's ID is
    copied into labels and annotations. Repair is for recovery, not for a
    reader. The cost is one pass over the head's records, which were just
    decoded (or reused): no segment is read, whatever the history's length.
    """
    problems = list(_check_name(obj, state))
    if ANNOTATION_TASK_ID in obj.annotations:
        # A missing annotation is harmless: the name says which task this is,
        # and the next write puts the annotation back.
        problems.extend(_check_task_annotation(obj, state))
    if obj.data is not None and "iteration" in obj.data:
        problems.extend(_check_iterations(state))
    problems.extend(_check_ids(state))
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise CorruptState(
            f"{obj.name} is inconsistent, refused: {first.field}: {first.message}{more}",
            task_id=state.task_id,
            field=first.field,
        )


def cross_check(obj: StoredObject, state: TaskState) -> list[Problem]:
    problems = list(_check_name(obj, state))
    if obj.data is not None and "iteration" in obj.data:
        problems.extend(_check_iterations(state))
    problems.extend(_check_ids(state))
    problems.extend(_check_index(state))
    problems.extend(_check_resolutions(state))
    if state.schema_version >= 1:  # version 0 had none; migrating writes them
        problems.extend(_check_annotations(obj, state))
    return problems


def _check_iterations(state: TaskState) -> Iterator[Problem]:
    # From the head alone: records that left it are counted by the index.
    total = state.iteration_total
    if state.iteration != total:
        in_segments = total - len(state.iteration_history)
        where = f" (and {in_segments} in segments)" if in_segments else ""
        yield Problem(
            "iteration",
            ProblemCode.ITERATION_MISMATCH,
            f"iteration is {state.iteration} but iteration_history has "
            f"{len(state.iteration_history)} records{where}",
        )


def _check_ids(state: TaskState) -> Iterator[Problem]:
    # From the head alone: IDs in the head, and the feedback IDs it lists as
    # recently moved. (Across segments, uniqueness is the writer's: it looks
    # every new ID up through the segments' filters before appending it.)
    for key, records in (
        ("iteration_history", state.iteration_history),
        ("error_messages", state.error_messages),
    ):
        keys = [k for k in map(record_id, records) if k is not None]
        if len(set(keys)) != len(keys):
            twice = sorted({k for k in keys if keys.count(k) > 1})
            yield Problem(key, ProblemCode.DUPLICATE_ID, f"ID(s) {twice[:5]!r} appear twice")
    seen: set[str] = set()
    for entry in state.feedback_history:
        if entry.id in seen:
            yield Problem(
                "feedback_history", ProblemCode.DUPLICATE_ID, f"ID {entry.id!r} appears twice"
            )
        elif entry.id in state.recent_moved_ids:
            yield Problem(
                "feedback_history",
                ProblemCode.DUPLICATE_ID,
                f"ID {entry.id!r} is in the head and was moved to segment "
                f"{state.recent_moved_ids[entry.id]}",
            )
        seen.add(entry.id)


def _check_index(state: TaskState) -> Iterator[Problem]:
    # Radon grade C: one branch per invariant of the index, each reported on its own.
    def problem(message: str) -> Problem:
        return Problem(KEY_HISTORY_INDEX, ProblemCode.INDEX_MISMATCH, message)

    previous: SegmentRef | None = None
    last: dict[str, SegmentRef] = {}
    for seg in state.segments:
        if previous is not None and seg.n <= previous.n:
            yield problem(f"segment {seg.n} follows segment {previous.n}")
        before = last.get(seg.kind)
        expected_seq = before.end_seq if before is not None else 0
        if before is not None and seg.first_seq != expected_seq:
            yield problem(f"segment {seg.n} starts at {seg.first_seq}, not at {expected_seq}")
        last[seg.kind] = seg
        try:
            expected = segment_name(state.task_id, seg.n)
        except InvalidInput:
            expected = seg.name
        if seg.name != expected:
            yield problem(f"segment {seg.n} is named {seg.name!r}, not {expected!r}")
        previous = seg
    if state.recent_moved_ids and not state.segments:
        yield problem("recent_moved lists IDs, but there are no segments")


def _check_resolutions(state: TaskState) -> Iterator[Problem]:
    def problem(message: str) -> Problem:
        return Problem(KEY_FEEDBACK_RESOLUTIONS, ProblemCode.INDEX_MISMATCH, message)

    if not state.archived_resolutions:
        return
    if not state.segments:
        yield problem("lists resolutions of archived entries, but there are no segments")
    in_head = [e.id for e in state.feedback_history if e.id in state.archived_resolutions]
    if in_head:
        yield problem(
            f"{len(in_head)} ID(s) are in the head, whose entries hold their own "
            f"resolution: {in_head[:5]!r}"
        )


def _check_name(obj: StoredObject, state: TaskState) -> Iterator[Problem]:
    """``task_id`` against the object's name: the name says which task this is."""
    try:
        expected = object_name(state.task_id)
    except InvalidInput as e:
        yield Problem("task_id", ProblemCode.BAD_VALUE, str(e))
        return
    if obj.name != expected:
        yield Problem(
            "task_id",
            ProblemCode.TASK_ID_MISMATCH,
            f"is {state.task_id!r}, whose state is {expected}, not {obj.name}",
        )


def _check_task_annotation(obj: StoredObject, state: TaskState) -> Iterator[Problem]:
    ann_task = obj.annotations.get(ANNOTATION_TASK_ID)
    if ann_task != state.task_id:
        yield Problem(
            f"annotations.{ANNOTATION_TASK_ID}",
            ProblemCode.ANNOTATION_MISMATCH,
            f"is {ann_task!r}, data.task_id is {state.task_id!r}",
        )


def _check_annotations(obj: StoredObject, state: TaskState) -> Iterator[Problem]:
    yield from _check_task_annotation(obj, state)
    ann_update = obj.annotations.get(ANNOTATION_LAST_UPDATE)
    if last_update_of(obj) != state.last_update:
        yield Problem(
            f"annotations.{ANNOTATION_LAST_UPDATE}",
            ProblemCode.ANNOTATION_MISMATCH,
            f"is {ann_update!r}, data.last_update is {format_timestamp(state.last_update)}"
            " (cleanup decides on the annotation)",
        )
    ann_iteration = obj.annotations.get(ANNOTATION_ITERATION)
    # Missing is harmless (written before it existed: ``ls`` reads the data then);
    # a stale one would show the wrong counter in every listing. A counter that
    # disagrees with its records is its own problem, whose repair rewrites this.
    consistent = state.iteration == state.iteration_total
    if ann_iteration is not None and consistent and ann_iteration != str(state.iteration):
        yield Problem(
            f"annotations.{ANNOTATION_ITERATION}",
            ProblemCode.ANNOTATION_MISMATCH,
            f"is {ann_iteration!r}, data.iteration is {state.iteration} (ls shows the annotation)",
        )
    yield from _check_policy_annotations(obj, state)


def _check_policy_annotations(obj: StoredObject, state: TaskState) -> Iterator[Problem]:
    """The policy's annotations against the data: cleanup and ``ls`` read only those.

    An older remstate's write keeps the ``policy`` key but drops these (they
    are remstate's, and it does not know them): reported, so that a repair
    or the next write puts them back.
    """
    policy = state.policy
    for key, expected in (
        (ANNOTATION_TTL, policy.ttl_seconds),
        (ANNOTATION_MAX_ITERATIONS, policy.max_iterations),
    ):
        stored = obj.annotations.get(key)
        if stored != (None if expected is None else str(expected)):
            yield Problem(
                f"annotations.{key}",
                ProblemCode.ANNOTATION_MISMATCH,
                f"is {stored!r}, data.policy says {expected!r} (cleanup decides on the annotation)",
            )
