"""TaskState: construction, totals across head and segments, its JSON form."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from remstate.errors import CorruptState, InvalidInput
from remstate.schema import (
    MAX_JSON_DEPTH,
    ErrorRecord,
    FeedbackEntry,
    HistoryIndex,
    IterationRecord,
    SegmentRef,
    Status,
    TaskState,
)
from tests.helpers import T0, entry


def clock() -> datetime:
    return T0


class TestTaskState:
    def test_new(self) -> None:
        """A new task: iteration 0, pending, no history, the clock's time."""
        state = TaskState.new("42", clock=clock, metadata={"repo": "a/b"})
        assert (state.iteration, state.status, state.last_update) == (0, Status.PENDING, T0)
        assert state.feedback_total == 0
        assert state.metadata == {"repo": "a/b"}

    def test_new_validates(self) -> None:
        """Bad task IDs, unknown statuses and non-JSON metadata are refused."""
        with pytest.raises(InvalidInput):
            TaskState.new("", clock=clock)
        with pytest.raises(InvalidInput):
            TaskState.new("42", clock=clock, status="zombie")
        with pytest.raises(InvalidInput):
            TaskState.new("42", clock=clock, metadata={"x": {1, 2}})

    def test_naive_last_update_is_refused(self) -> None:
        """The state's time must be aware."""
        with pytest.raises(InvalidInput):
            TaskState("42", 0, "pending", datetime(2024, 5, 1))

    def test_lists_become_tuples_and_known_status_strings_members(self) -> None:
        """Construction normalises, so equal states compare equal."""
        state = TaskState("42", 0, "completed", T0, iteration_history=[IterationRecord(1, T0)])  # type: ignore[arg-type]
        assert state.iteration_history == (IterationRecord(1, T0),)
        assert state.status is Status.COMPLETED

    def test_history_across_segments(self) -> None:
        """Sequence numbers continue from the last segment into the head."""
        head = tuple(entry(id=f"e{i}") for i in range(3))
        history = HistoryIndex(
            (SegmentRef(1, "s1", 0, 10, "u1"), SegmentRef(2, "s2", 10, 5, "u2")),
            {"e-old": 2},
        )
        state = TaskState("42", 0, "pending", T0, feedback_history=head, history_index=history)
        assert state.head_first_seq == 15
        assert state.feedback_total == 18
        assert state.next_segment_number == 3
        assert state.segment_for_seq(0) == history.segments[0]
        assert state.segment_for_seq(14) == history.segments[1]
        assert state.segment_for_seq(15) is None
        assert state.segment_for_seq(-1) is None
        assert state.find_feedback("e1") == head[1]
        assert state.find_feedback("e-old") is None
        assert state.moved_to_segment("e-old") == 2

    def test_metadata_nested_past_the_limit_is_refused(self) -> None:
        """Metadata may nest MAX_JSON_DEPTH levels (itself included); deeper is InvalidInput."""
        deep: Any = {}
        for _ in range(MAX_JSON_DEPTH - 1):
            deep = {"k": deep}
        TaskState.new("42", clock=clock, metadata=deep)
        with pytest.raises(InvalidInput, match="levels deep"):
            TaskState.new("42", clock=clock, metadata={"k": deep})
        very_deep: Any = []
        for _ in range(5000):
            very_deep = [very_deep]
        with pytest.raises(InvalidInput, match="levels deep"):
            TaskState("42", 0, "pending", T0, metadata={"k": very_deep})

    def test_record_extras_nested_past_the_limit_are_refused(self) -> None:
        """Unknown keys of records are bounded the same way (their object is level 1)."""
        deep: Any = []
        for _ in range(MAX_JSON_DEPTH):
            deep = [deep]
        with pytest.raises(InvalidInput, match="levels deep"):
            FeedbackEntry("x", T0, "a", "low", "bug", "d", extra={"k": deep})
        with pytest.raises(InvalidInput, match="levels deep"):
            ErrorRecord(T0, "m", extra={"k": deep})
        with pytest.raises(InvalidInput, match="levels deep"):
            IterationRecord(1, T0, extra={"k": deep})

    def test_schema_version_is_not_part_of_equality(self) -> None:
        """A migrated state equals the same state read from version 1."""
        a = TaskState("42", 0, "pending", T0, schema_version=0)
        assert a == TaskState("42", 0, "pending", T0)

    def test_from_dict_reports_the_field(self) -> None:
        """A bad nested value raises CorruptState with its path."""
        data = TaskState.new("42", clock=clock).to_dict()
        data["feedback_history"] = [{"id": "x"}]
        with pytest.raises(CorruptState) as info:
            TaskState.from_dict(data)
        assert info.value.field == "feedback_history[0].timestamp"
