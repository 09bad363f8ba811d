"""Repairing what a head says about its history: the index of segments, IDs and the counter.

Part of :mod:`remstate.schema.repair` (which reports each change): segments
never change once written, so a repair changes only the head's index. A
segment that is gone or unreadable leaves the index (its records are named as
lost; an unreadable one stays in place, referenced by the snapshot), one that
was replaced but reads well is taken as it is, and the later segments'
sequence numbers close up over the gap.

Pure functions, no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from remstate.errors import RemstateError
from remstate.objects import StoredObject
from remstate.schema.decoding import decode_filter_page, decode_segment, segment_ref
from remstate.schema.index import HistoryIndex, SegmentRef
from remstate.schema.layout import KEY_HISTORY_INDEX
from remstate.schema.problems import Problem, ProblemCode
from remstate.schema.records import ErrorRecord, FeedbackEntry, IterationRecord, record_id
from remstate.schema.state import TaskState
from remstate.schema.validation import find_segment_problems
from remstate.schema.values import KIND_ID_FILTERS, KINDS

__all__ = [
    "MAX_RECONSTRUCTED",
    "REPAIRED_NOTE",
    "fix_counter",
    "fix_duplicates",
    "fix_index",
    "segment_problems",
]

#: The note of iteration records made up by a repair where the counter was ahead.
REPAIRED_NOTE = "reconstructed by recover_state: the counter was ahead of the records"
#: The most records a repair makes up: past it, the counter is lowered (and named as lost).
MAX_RECONSTRUCTED = 1000

Fix = Callable[[ProblemCode, str, str], None]
Lose = Callable[[str, str], None]
_R = TypeVar("_R", IterationRecord, ErrorRecord)


def _verdict(  # noqa: PLR0911
    task_id: str, ref: SegmentRef, obj: StoredObject | None
) -> tuple[SegmentRef | None, str]:
    """The reference to keep for a segment as read (None: leave it out), and why.

    One return per verdict (PLR0911): each is a case of the table in the module docstring.
    """
    if obj is None:
        return None, "is missing"
    if ref.kind == KIND_ID_FILTERS:
        if ref.uid and obj.uid != ref.uid:
            return None, "was replaced"
        try:
            decode_filter_page(obj)
        except RemstateError as e:
            return None, f"cannot be read ({e})"
        return ref, ""
    try:
        segment = decode_segment(obj)
    except RemstateError as e:
        return None, f"cannot be read ({e})"
    if segment.kind != ref.kind or segment.task_id != task_id:
        return None, f"holds {segment.kind} of task {segment.task_id!r}"
    if (ref.uid and obj.uid != ref.uid) or segment.count != ref.count:
        adopted = dataclasses.replace(ref, uid=obj.uid, count=segment.count, id_filter=None)
        return adopted, f"was replaced: holds {segment.count} records, taken as it is"
    return ref, ""


def segment_problems(
    task_id: str, refs: Sequence[SegmentRef], segments: Mapping[str, StoredObject | None]
) -> list[Problem]:
    """The problems of the segments an index names, as read (None: missing); never raises.

    A problem inside a segment is reported with the segment's name before its field.
    """
    problems: list[Problem] = []
    for ref in refs:
        if ref.name not in segments:
            continue
        obj = segments[ref.name]
        if obj is not None and ref.kind != KIND_ID_FILTERS:
            problems.extend(
                Problem(f"{ref.name}:{p.field}", p.code, p.message)
                for p in find_segment_problems(obj)
            )
        kept, why = _verdict(task_id, ref, obj)
        if kept != ref or (obj is not None and ref.uid and obj.uid != ref.uid):
            problems.append(
                Problem(
                    KEY_HISTORY_INDEX,
                    ProblemCode.INDEX_MISMATCH,
                    f"segment {ref.n} ({ref.name}, {ref.count} {ref.kind}) {why}",
                )
            )
    return problems


def rebuild_index(state: TaskState, objects: Sequence[StoredObject], fix: Fix) -> TaskState:
    """The index made again from segment objects, when the stored one could not be read.

    ``objects`` are the segments the head's ``remstate.io/segments`` annotation
    named (never every segment listed: an orphan's records are still in the
    head). Each must read, and be this task's; the IDs moved last and the
    inline ID filters are not known (lookups read the segments instead).
    """
    refs: list[SegmentRef] = []
    for obj in objects:
        try:
            ref = segment_ref(obj)
            if ref.kind != KIND_ID_FILTERS and decode_segment(obj).task_id != state.task_id:
                continue
            if ref.kind == KIND_ID_FILTERS:
                continue  # the filters of segments whose index is gone: not needed
        except RemstateError:
            continue
        refs.append(ref)
    refs.sort(key=lambda r: r.n)
    if not refs:
        return state
    closed = _close_up(refs)
    fix(
        ProblemCode.INDEX_MISMATCH,
        KEY_HISTORY_INDEX,
        f"rebuilt from segments {', '.join(str(r.n) for r in closed)}, "
        "named by the remstate.io/segments annotation",
    )
    return dataclasses.replace(state, history_index=HistoryIndex(segments=tuple(closed)))


def fix_index(
    state: TaskState, segments: Mapping[str, StoredObject | None], fix: Fix, lose: Lose
) -> TaskState:
    """The index without the segments that are gone, with those replaced taken as they are."""
    kept: list[SegmentRef] = []
    for ref in state.segments:
        if ref.name not in segments:
            kept.append(ref)
            continue
        obj = segments[ref.name]
        verdict, why = _verdict(state.task_id, ref, obj)
        if verdict is ref:
            kept.append(ref)
            continue
        if verdict is not None:
            fix(ProblemCode.INDEX_MISMATCH, KEY_HISTORY_INDEX, f"segment {ref.n} {why}")
            kept.append(verdict)
            continue
        if ref.kind == KIND_ID_FILTERS:
            fix(
                ProblemCode.INDEX_MISMATCH,
                KEY_HISTORY_INDEX,
                f"filter page {ref.n} {why}: left out (IDs are looked up in the segments)",
            )
            continue
        fix(ProblemCode.INDEX_MISMATCH, KEY_HISTORY_INDEX, f"segment {ref.n} {why}: left out")
        kept_in_place = (
            "" if obj is None else "; the object is left in place, the snapshot refers to it"
        )
        lose(
            f"history segment {ref.name}",
            f"{ref.count} {ref.kind} records (sequence {ref.first_seq} to {ref.end_seq - 1}) "
            f"{why}{kept_in_place}",
        )
    if len(kept) == len(state.segments) and all(
        a is b for a, b in zip(kept, state.segments, strict=True)
    ):
        return _fix_resolutions(state, fix, lose)
    closed = _close_up(kept)
    if closed != kept:
        fix(
            ProblemCode.INDEX_MISMATCH,
            KEY_HISTORY_INDEX,
            "the later segments' sequence numbers closed up over the gap",
        )
    numbers = {s.n for s in closed}
    old = state.history_index
    history = HistoryIndex(
        segments=tuple(closed),
        recent_moved_ids={k: n for k, n in old.recent_moved_ids.items() if n in numbers},
        extra=old.extra,
    )
    return _fix_resolutions(dataclasses.replace(state, history_index=history), fix, lose)


def _close_up(refs: Iterable[SegmentRef]) -> list[SegmentRef]:
    """Each kind's segments numbered from 0 on, with no gap (filter pages as they are)."""
    next_seq = dict.fromkeys(KINDS, 0)
    out: list[SegmentRef] = []
    for ref in refs:
        if ref.kind in next_seq:
            if ref.first_seq != next_seq[ref.kind]:
                ref = dataclasses.replace(ref, first_seq=next_seq[ref.kind])  # noqa: PLW2901
            next_seq[ref.kind] = ref.end_seq
        out.append(ref)
    return out


def _fix_resolutions(state: TaskState, fix: Fix, lose: Lose) -> TaskState:
    """Resolutions of archived feedback: none for entries in the head, none without segments."""
    resolutions = state.archived_resolutions
    if not resolutions:
        return state
    key = "feedback_resolutions"
    if not state.segments:
        fix(ProblemCode.INDEX_MISMATCH, key, "no segments are left: resolutions left out")
        lose(key, f"{len(resolutions)} resolutions of archived entries that no segment holds")
        return dataclasses.replace(state, archived_resolutions={})
    in_head = {e.id for e in state.feedback_history}
    kept = {k: v for k, v in resolutions.items() if k not in in_head}
    if len(kept) == len(resolutions):
        return state
    fix(ProblemCode.INDEX_MISMATCH, key, "resolutions of entries in the head left out: theirs hold")
    return dataclasses.replace(state, archived_resolutions=kept)


def _unique(base: str, taken: set[str]) -> str:
    k = 1
    while True:
        candidate = f"{base[:110]}~dup{k}"
        if candidate not in taken:
            return candidate
        k += 1


def fix_duplicates(state: TaskState, fix: Fix) -> TaskState:
    """Records whose ID appears before: renamed (``renamed_from`` keeps the ID), never dropped."""
    taken = {e.id for e in state.feedback_history} | set(state.recent_moved_ids)
    seen = set(state.recent_moved_ids)
    entries: list[FeedbackEntry] = []
    for i, entry in enumerate(state.feedback_history):
        if entry.id in seen:
            new_id = _unique(entry.id, taken)
            taken.add(new_id)
            fix(
                ProblemCode.DUPLICATE_ID,
                f"feedback_history[{i}]",
                f"ID {entry.id!r} appears before: renamed {new_id!r} (renamed_from keeps it)",
            )
            entry = dataclasses.replace(  # noqa: PLW2901
                entry, id=new_id, extra={**entry.extra, "renamed_from": entry.id}
            )
        seen.add(entry.id)
        entries.append(entry)
    iterations = _renamed(state.iteration_history, "iteration_history", "op", fix)
    errors = _renamed(state.error_messages, "error_messages", "id", fix)
    if (
        all(a is b for a, b in zip(entries, state.feedback_history, strict=True))
        and iterations is state.iteration_history
        and errors is state.error_messages
    ):
        return state
    return dataclasses.replace(
        state,
        feedback_history=tuple(entries),
        iteration_history=iterations,
        error_messages=errors,
    )


def _renamed(records: tuple[_R, ...], key: str, field: str, fix: Fix) -> tuple[_R, ...]:
    taken = {k for k in map(record_id, records) if k is not None}
    seen: set[str] = set()
    out: list[_R] = []
    changed = False
    for i, record in enumerate(records):
        rid = record_id(record)
        if rid is not None and rid in seen:
            new_id = _unique(rid, taken)
            taken.add(new_id)
            extra: dict[str, Any] = {**record.extra, field: new_id, "renamed_from": rid}
            record = dataclasses.replace(record, extra=extra)  # noqa: PLW2901
            fix(
                ProblemCode.DUPLICATE_ID,
                f"{key}[{i}]",
                f"ID {rid!r} appears before: renamed {new_id!r}",
            )
            changed = True
        if rid is not None:
            seen.add(rid)
        out.append(record)
    return tuple(out) if changed else records


def fix_counter(state: TaskState, fix: Fix, lose: Lose) -> TaskState:
    """The counter agrees with the records: the higher wins (records are made up, bounded)."""
    total = state.iteration_total
    counter = state.iteration
    if counter == total:
        return state
    if counter < total:
        fix(
            ProblemCode.ITERATION_MISMATCH,
            "iteration",
            f"was {counter}, set to {total}: the number of iteration records",
        )
        return dataclasses.replace(state, iteration=total)
    missing = counter - total
    if missing > MAX_RECONSTRUCTED:
        fix(ProblemCode.ITERATION_MISMATCH, "iteration", f"was {counter}, set to {total}")
        lose(
            "iteration",
            f"the counter {counter}: {missing} ahead of the records, too many to make up",
        )
        return dataclasses.replace(state, iteration=total)
    made_up = tuple(
        IterationRecord(total + i, state.last_update, REPAIRED_NOTE) for i in range(1, missing + 1)
    )
    fix(
        ProblemCode.ITERATION_MISMATCH,
        "iteration_history",
        f"{missing} records made up (at last_update, noted) so that the records count "
        f"the counter's {counter} iterations",
    )
    return dataclasses.replace(state, iteration_history=state.iteration_history + made_up)
