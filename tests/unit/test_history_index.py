"""The history index: segments of each kind, their ID filters, filter pages, checks."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from remstate.errors import InvalidInput
from remstate.schema import (
    KIND_ERRORS,
    KIND_FEEDBACK,
    KIND_ID_FILTERS,
    KIND_ITERATIONS,
    ErrorRecord,
    FeedbackEntry,
    HistoryIndex,
    IdFilter,
    IterationRecord,
    ProblemCode,
    SegmentRef,
    TaskState,
    apply_compaction,
    decode_filter_page,
    decode_segment,
    decode_state,
    filter_page_object,
    find_problems,
    needs_filter_page,
    plan_moves,
    segment_object,
    segment_ref,
    state_object,
)
from remstate.store.base import StoredObject
from tests.helpers import T0


def fb(i: int) -> FeedbackEntry:
    return FeedbackEntry(f"e{i}", T0 + timedelta(seconds=i), "r", "medium", "style", f"d{i}")


def iterations(first: int, last: int) -> tuple[IterationRecord, ...]:
    return tuple(
        IterationRecord(i, T0 + timedelta(seconds=i), "", {"op": f"op-{i}"})
        for i in range(first, last + 1)
    )


def stored(state: TaskState) -> StoredObject:
    obj = state_object(state)
    return dataclasses.replace(obj, uid="u-head", resource_version="1")


class TestSegmentRef:
    def test_kind_and_filter_read_back(self) -> None:
        """A non-feedback segment's kind and its ID filter round-trip through the index."""
        ref = SegmentRef(
            3, "task-42-state-h3", 10, 2, "u", kind=KIND_ERRORS, id_filter=IdFilter.of(["a"])
        )
        back = SegmentRef.from_dict(ref.to_dict())
        assert back == ref
        assert back.id_filter == ref.id_filter
        assert "a" in back.id_filter  # type: ignore[operator]

    def test_an_older_index_reads_as_feedback_without_a_filter(self) -> None:
        """No kind and no ids: a feedback segment that may hold any id."""
        ref = SegmentRef.from_dict({"n": 1, "name": "s", "first_seq": 0, "count": 1, "uid": "u"})
        assert (ref.kind, ref.id_filter) == (KIND_FEEDBACK, None)
        assert "kind" not in ref.to_dict()
        assert "ids" not in ref.to_dict()

    def test_a_filter_in_an_unknown_form_is_kept_and_unknown(self) -> None:
        """A newer remstate's filter form is written back as it was, and read as "maybe"."""
        raw = {"n": 1, "name": "s", "first_seq": 0, "count": 1, "uid": "u", "ids": {"xor": "AA"}}
        ref = SegmentRef.from_dict(raw)
        assert ref.id_filter is None
        assert ref.to_dict() == raw

    def test_an_index_keeps_keys_it_does_not_know(self) -> None:
        """Unknown keys of the history index are written back."""
        index = HistoryIndex.from_dict({"segments": [], "recent_moved": {}, "later": [1]})
        assert index.to_dict()["later"] == [1]


class TestKindsOfSegments:
    def test_iteration_records_move_to_their_own_segments(self) -> None:
        """Past their budget, the oldest iteration records move; numbering stays per kind."""
        state = dataclasses.replace(
            TaskState.new("42", clock=lambda: T0),
            iteration=400,
            iteration_history=iterations(1, 400),
            feedback_history=(fb(0),),
        )
        plan = plan_moves(state)
        assert plan is not None
        kind, moved = plan
        assert kind == KIND_ITERATIONS
        obj = dataclasses.replace(segment_object(state, moved, kind=kind), uid="u1")
        after = apply_compaction(state, segment_ref(obj))
        assert after.iteration_total == 400
        assert after.feedback_total == 1
        assert after.first_seq(KIND_ITERATIONS) == len(moved)
        assert after.head_first_seq == 0
        assert decode_segment(obj).iterations == moved
        assert after.segments[0].id_filter is not None
        assert "op-1" in after.segments[0].id_filter
        assert find_problems(stored(after)) == []

    def test_the_counter_is_checked_against_records_in_segments_too(self) -> None:
        """iteration must equal the head's records plus the index's counts."""
        state = dataclasses.replace(
            TaskState.new("42", clock=lambda: T0),
            iteration=400,
            iteration_history=iterations(1, 400),
        )
        kind, moved = plan_moves(state)  # type: ignore[misc]
        moved_state = apply_compaction(
            state,
            segment_ref(dataclasses.replace(segment_object(state, moved, kind=kind), uid="u")),
        )
        assert find_problems(stored(moved_state)) == []
        wrong = dataclasses.replace(moved_state, iteration=len(moved_state.iteration_history))
        problems = find_problems(stored(wrong))
        assert [p.code for p in problems] == [ProblemCode.ITERATION_MISMATCH]

    def test_a_key_twice_in_the_head_is_a_duplicate(self) -> None:
        """Two iteration records (or error records) with one key are reported."""
        records = iterations(1, 2)
        twice = (records[0], dataclasses.replace(records[1], extra={"op": "op-1"}))
        errors = (
            ErrorRecord(T0, "a", {"id": "x"}),
            ErrorRecord(T0, "b", {"id": "x"}),
        )
        state = dataclasses.replace(
            TaskState.new("42", clock=lambda: T0),
            iteration=2,
            iteration_history=twice,
            error_messages=errors,
        )
        codes = [(p.field, p.code) for p in find_problems(stored(state))]
        assert ("iteration_history", ProblemCode.DUPLICATE_ID) in codes
        assert ("error_messages", ProblemCode.DUPLICATE_ID) in codes

    def test_a_segment_must_hold_the_kind_it_names(self) -> None:
        """with_segment refuses an unknown kind and a count the head does not have."""
        state = TaskState.new("42", clock=lambda: T0)
        with pytest.raises(InvalidInput):
            state.with_segment(1, "s", "u", 1, kind="bogus")
        with pytest.raises(InvalidInput):
            state.with_segment(1, "s", "u", 1, kind=KIND_ERRORS)


class TestFilterPages:
    def _with_segments(self, count: int) -> TaskState:
        state = TaskState.new("42", clock=lambda: T0)
        state = dataclasses.replace(state, feedback_history=tuple(fb(i) for i in range(count)))
        for i in range(count):
            state = state.with_segment(i + 1, f"task-42-state-h{i + 1}", f"u{i}", 1)
        return state

    def test_inline_filters_move_into_a_page_and_are_found_there(self) -> None:
        """A page takes the inline filters; the head keeps the range, the page the bits."""
        state = self._with_segments(6)
        assert needs_filter_page(state, filter_budget=10)
        obj = dataclasses.replace(filter_page_object(state, n=7), uid="p")
        page = segment_ref(obj)
        assert (page.kind, page.first_seq, page.count) == (KIND_ID_FILTERS, 0, 7)
        after = state.with_filter_page(page)
        assert all(s.id_filter is None for s in after.segments)
        assert not needs_filter_page(after, filter_budget=10)
        filters = decode_filter_page(obj)
        assert sorted(filters) == [1, 2, 3, 4, 5, 6]
        assert "e2" in filters[3]
        assert after.filter_page_for(3) == page
        assert after.segments_of(KIND_FEEDBACK) == state.segments  # refs stay
        assert decode_state(stored(after)).segments_of(KIND_ID_FILTERS) == (page,)

    def test_a_page_takes_only_what_fits_and_the_next_one_follows_on(self) -> None:
        """Past max_bytes, a page covers a prefix; the next page starts where it ended."""
        state = self._with_segments(6)
        first = segment_ref(
            dataclasses.replace(filter_page_object(state, n=7, max_bytes=100), uid="p1")
        )
        assert first.end_seq < 7
        state = state.with_filter_page(first)
        assert [s.n for s in state.movable_filters()] == list(range(first.end_seq, 7))
        second = segment_ref(dataclasses.replace(filter_page_object(state, n=8), uid="p2"))
        assert second.first_seq == first.end_seq
        state = state.with_filter_page(second)
        assert state.movable_filters() == []
        with pytest.raises(InvalidInput):
            filter_page_object(state, n=9)  # nothing left to take
        assert find_problems(stored(state)) == []
