"""``decode_state`` refuses a state whose next write would spread an inconsistency.

The validator reports the same problems as data; ``check=False`` reads
without refusing (deleting, inspecting).
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from remstate.errors import CorruptState
from remstate.schema import (
    ANNOTATION_TASK_ID,
    FeedbackEntry,
    HistoryIndex,
    IterationRecord,
    ProblemCode,
    SegmentRef,
    TaskState,
    decode_state,
    find_problems,
    object_name,
    state_object,
)
from remstate.store.base import StoredObject
from tests.helpers import T0


def fb(i: int) -> FeedbackEntry:
    return FeedbackEntry.new(
        author="a",
        severity="low",
        issue_type="bug",
        description=f"d{i}",
        id=f"e{i}",
        timestamp=T0 + timedelta(seconds=i),
    )


def state(**changes: Any) -> TaskState:
    fields: dict[str, Any] = {
        "task_id": "42",
        "iteration": 2,
        "status": "pending",
        "last_update": T0,
        "iteration_history": (IterationRecord(1, T0), IterationRecord(2, T0)),
        "feedback_history": (fb(0), fb(1)),
    }
    fields.update(changes)
    return TaskState(**fields)


def renamed(obj: StoredObject, name: str) -> StoredObject:
    return dataclasses.replace(obj, name=name)


def annotated(obj: StoredObject, **annotations: str | None) -> StoredObject:
    merged = {**obj.annotations, **annotations}
    return dataclasses.replace(obj, annotations={k: v for k, v in merged.items() if v is not None})


SEGMENT = SegmentRef(1, "task-42-state-h1", 0, 1, "u")


class TestRefused:
    @pytest.mark.parametrize(
        ("obj", "field", "code", "message"),
        [
            pytest.param(
                state_object(state(iteration=0)),
                "iteration",
                ProblemCode.ITERATION_MISMATCH,
                "iteration is 0 but iteration_history has 2 records",
                id="counter-behind",
            ),
            pytest.param(
                state_object(state(iteration=5)),
                "iteration",
                ProblemCode.ITERATION_MISMATCH,
                "iteration is 5 but iteration_history has 2 records",
                id="counter-ahead",
            ),
            pytest.param(
                state_object(state(feedback_history=(fb(0), fb(1), fb(0)))),
                "feedback_history",
                ProblemCode.DUPLICATE_ID,
                "ID 'e0' appears twice",
                id="duplicate-in-head",
            ),
            pytest.param(
                state_object(state(history_index=HistoryIndex((SEGMENT,), {"e1": 1}))),
                "feedback_history",
                ProblemCode.DUPLICATE_ID,
                "ID 'e1' is in the head and was moved to segment 1",
                id="in-head-and-moved",
            ),
            pytest.param(
                renamed(state_object(state(task_id="43")), object_name("42")),
                "task_id",
                ProblemCode.TASK_ID_MISMATCH,
                "is '43', whose state is task-43-state, not task-42-state",
                id="another-task-in-this-object",
            ),
            pytest.param(
                annotated(state_object(state()), **{ANNOTATION_TASK_ID: "43"}),
                f"annotations.{ANNOTATION_TASK_ID}",
                ProblemCode.ANNOTATION_MISMATCH,
                "is '43', data.task_id is '42'",
                id="annotation-of-another-task",
            ),
        ],
    )
    def test_raises_corrupt_state_naming_the_problem(
        self, obj: StoredObject, field: str, code: ProblemCode, message: str
    ) -> None:
        """CorruptState names the object, the field and the problem; the validator agrees."""
        with pytest.raises(CorruptState) as caught:
            decode_state(obj)
        assert str(caught.value) == f"{obj.name} is inconsistent, refused: {field}: {message}"
        assert caught.value.field == field
        assert (field, code) in {(p.field, p.code) for p in find_problems(obj)}
        assert isinstance(decode_state(obj, check=False), TaskState)  # read, not refused

    def test_reused_records_are_checked_too(self) -> None:
        """A newer version read with the previous state's records is checked like any other."""
        previous = decode_state(state_object(state()))
        grown = state(feedback_history=(fb(0), fb(1), fb(0)))
        with pytest.raises(CorruptState, match="appears twice"):
            decode_state(state_object(grown), previous=previous)

    def test_counts_the_other_problems(self) -> None:
        """With several problems, the first is named and the others counted."""
        obj = state_object(state(iteration=7, feedback_history=(fb(0), fb(0))))
        with pytest.raises(CorruptState, match=r"records \(and 1 more\)$"):
            decode_state(obj)


class TestAccepted:
    def test_consistent_state(self) -> None:
        """What a manager writes reads back."""
        assert decode_state(state_object(state())) == state()

    def test_missing_task_annotation(self) -> None:
        """The name says which task it is; the next write restores the annotation."""
        obj = annotated(state_object(state()), **{ANNOTATION_TASK_ID: None})
        assert decode_state(obj) == state()

    def test_missing_iteration_is_counted(self) -> None:
        """No ``iteration`` key: counted from the records, nothing to disagree with."""
        obj = state_object(state())
        data = {k: v for k, v in (obj.data or {}).items() if k != "iteration"}
        assert decode_state(dataclasses.replace(obj, data=data)).iteration == 2

    def test_an_id_moved_earlier_is_not_a_duplicate(self) -> None:
        """An ID in ``recent_moved`` that the head no longer holds is fine."""
        obj = state_object(state(history_index=HistoryIndex((SEGMENT,), {"e9": 1})))
        assert decode_state(obj).recent_moved_ids == {"e9": 1}
