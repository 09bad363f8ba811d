"""Moving old feedback from the head into history segments."""

from __future__ import annotations

import dataclasses
import random
import string
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remstate.errors import InvalidInput
from remstate.schema import (
    KEY_FEEDBACK_RESOLUTIONS,
    RESOLUTIONS_LIMIT,
    FeedbackEntry,
    HistoryIndex,
    SegmentRef,
    TaskState,
    apply_compaction,
    decode_segment,
    decode_state,
    encode_state,
    feedback_bytes,
    find_problems,
    plan_compaction,
    segment_object,
    segment_ref,
    state_object,
    value_bytes,
)
from remstate.store.base import StoredObject
from tests.helpers import T0
from tests.unit.strategies import FAST


def fb(i: int, description: str = "") -> FeedbackEntry:
    return FeedbackEntry(
        f"e{i}",
        T0 + timedelta(seconds=i),
        "reviewer",
        "medium",
        "style",
        description or f"please rename variable {i}",
    )


def state_with(entries: list[FeedbackEntry], **changes: Any) -> TaskState:
    return dataclasses.replace(
        TaskState("42", 0, "in_progress", T0, feedback_history=tuple(entries)), **changes
    )


class Simulation:
    """A task's objects, kept as the manager would keep them in the store."""

    def __init__(self, **budgets: int) -> None:
        self.budgets = budgets
        self.state = TaskState.new("42", clock=lambda: T0)
        self.segments: dict[str, StoredObject] = {}

    def append(self, entry: FeedbackEntry) -> None:
        self.state = dataclasses.replace(
            self.state, feedback_history=(*self.state.feedback_history, entry)
        )
        while (moved := plan_compaction(self.state, **self.budgets)) is not None:
            obj = segment_object(self.state, moved)
            created = dataclasses.replace(obj, uid=f"uid-{len(self.segments)}")
            self.segments[created.name] = created
            self.state = apply_compaction(self.state, segment_ref(created))

    def all_entries(self) -> list[FeedbackEntry]:
        out: list[FeedbackEntry] = []
        for ref in self.state.segments:
            segment = decode_segment(self.segments[ref.name])
            assert segment.first_seq == ref.first_seq == len(out)
            out.extend(segment.entries)
        return out + list(self.state.feedback_history)


class TestPlan:
    def test_small_head_needs_nothing(self) -> None:
        """Under both budgets, nothing moves."""
        assert plan_compaction(state_with([fb(i) for i in range(10)])) is None
        assert plan_compaction(state_with([])) is None

    def test_moves_oldest_and_keeps_newest(self) -> None:
        """Past the feedback budget the oldest move; the newest up to keep_bytes stay."""
        entries = [fb(i) for i in range(100)]
        moved = plan_compaction(state_with(entries), feedback_budget=4000, keep_bytes=1000)
        assert moved is not None
        assert moved == entries[: len(moved)]
        kept = entries[len(moved) :]
        assert feedback_bytes(kept) <= 1000 + 2
        assert feedback_bytes([*kept, entries[len(moved) - 1]]) > 1000

    def test_big_metadata_triggers_head_budget(self) -> None:
        """A head over its byte budget moves feedback even under the feedback budget."""
        rng = random.Random(3)
        blob = "".join(rng.choices(string.ascii_letters, k=30_000))
        state = state_with([fb(i) for i in range(20)], metadata={"blob": blob})
        assert plan_compaction(state, head_budget=10**6) is None
        moved = plan_compaction(state, head_budget=20_000, keep_bytes=300)
        assert moved is not None
        assert 0 < len(moved) < 20

    def test_resolutions_count_against_the_head_budget(self) -> None:
        """The head's ``feedback_resolutions`` counts like the rest of the head."""
        rng = random.Random(4)
        resolutions = {
            "".join(rng.choices(string.ascii_letters, k=100)): T0 + timedelta(microseconds=i)
            for i in range(RESOLUTIONS_LIMIT)
        }
        history = HistoryIndex((SegmentRef(1, "task-42-state-h1", 0, 5, "u"),))
        entries = [fb(i) for i in range(5, 25)]
        bare = state_with(entries, history_index=history)
        state = state_with(entries, history_index=history, archived_resolutions=resolutions)
        encoded = encode_state(state).data[KEY_FEEDBACK_RESOLUTIONS]
        budget = value_bytes(encode_state(bare).data) + len(encoded) // 2
        assert plan_compaction(bare, head_budget=budget, keep_bytes=300) is None
        moved = plan_compaction(state, head_budget=budget, keep_bytes=300)
        assert moved is not None
        assert 0 < len(moved) < 20

    def test_nothing_to_move_when_all_must_stay(self) -> None:
        """If only kept entries are left, the plan is None (the loop ends)."""
        state = state_with([fb(0)], metadata={"x": "y" * 5000})
        assert plan_compaction(state, head_budget=1000, keep_bytes=10_000) is None

    def test_segment_budget_limits_one_segment(self) -> None:
        """One plan moves no more than one segment can hold."""
        rng = random.Random(5)
        entries = [fb(i, "".join(rng.choices(string.ascii_letters, k=400))) for i in range(200)]
        state = state_with(entries)
        moved = plan_compaction(state, feedback_budget=1000, keep_bytes=0, segment_budget=20_000)
        assert moved is not None
        assert len(moved) < 200
        obj = segment_object(state, moved)
        assert value_bytes(obj.data or {}) <= 20_000

    def test_compressed_segments_hold_more(self) -> None:
        """Compressible entries are packed past their plain size."""
        entries = [fb(i, "the same words " * 20) for i in range(400)]
        state = state_with(entries)
        plain_sum = sum(e.json_size() for e in entries)
        budget = plain_sum // 4
        moved = plan_compaction(state, feedback_budget=1000, keep_bytes=0, segment_budget=budget)
        assert moved is not None
        assert sum(e.json_size() for e in moved) > budget
        assert value_bytes(segment_object(state, moved).data or {}) <= budget

    def test_entry_larger_than_a_segment_stays(self) -> None:
        """An entry no segment can hold is not planned (no endless loop)."""
        rng = random.Random(9)
        big = fb(0, "".join(rng.choices(string.ascii_letters, k=5000)))
        state = state_with([big, fb(1)])
        assert (
            plan_compaction(state, feedback_budget=100, keep_bytes=0, segment_budget=2000) is None
        )


class TestApply:
    def test_moves_the_prefix_into_the_index(self) -> None:
        """The head loses the moved entries; the index gains the segment and their IDs."""
        state = state_with([fb(i) for i in range(5)])
        ref = SegmentRef(1, "task-42-state-h1", 0, 3, "u1")
        after = apply_compaction(state, ref)
        assert [e.id for e in after.feedback_history] == ["e3", "e4"]
        assert after.segments == (ref,)
        assert dict(after.recent_moved_ids) == {"e0": 1, "e1": 1, "e2": 1}
        assert after.feedback_total == 5
        assert after.head_first_seq == 3

    def test_with_segment_is_the_same_from_parts(self) -> None:
        """``TaskState.with_segment`` takes the head's oldest entries, as apply_compaction."""
        state = state_with([fb(i) for i in range(5)])
        ref = SegmentRef(1, "task-42-state-h1", 0, 3, "u1")
        assert state.with_segment(1, "task-42-state-h1", "u1", 3) == apply_compaction(state, ref)

    def test_recent_ids_are_bounded_newest_kept(self) -> None:
        """Only the newest ``recent_limit`` moved IDs are remembered."""
        state = state_with([fb(i) for i in range(10)])
        state = apply_compaction(state, SegmentRef(1, "s1", 0, 4, "u"), recent_limit=5)
        state = apply_compaction(state, SegmentRef(2, "s2", 4, 4, "u"), recent_limit=5)
        assert list(state.recent_moved_ids) == ["e3", "e4", "e5", "e6", "e7"]
        assert state.moved_to_segment("e3") == 1
        assert state.moved_to_segment("e7") == 2

    @pytest.mark.parametrize(
        "ref",
        [
            SegmentRef(1, "s", 1, 2, "u"),  # does not start at the head
            SegmentRef(1, "s", 0, 0, "u"),  # empty
            SegmentRef(1, "s", 0, 9, "u"),  # more than the head holds
        ],
    )
    def test_refuses_a_segment_that_does_not_continue(self, ref: SegmentRef) -> None:
        """The segment must take exactly the head's oldest entries."""
        with pytest.raises(InvalidInput):
            apply_compaction(state_with([fb(0), fb(1)]), ref)

    def test_refuses_a_segment_number_going_back(self) -> None:
        """Segment numbers only go up."""
        history = HistoryIndex((SegmentRef(3, "s3", 0, 1, "u"),))
        state = state_with([fb(1)], history_index=history)
        with pytest.raises(InvalidInput):
            apply_compaction(state, SegmentRef(2, "s2", 1, 1, "u"))


class TestSimulation:
    def test_long_history_is_kept_whole_and_in_order(self) -> None:
        """After many appends every entry is found, in order, across segments and head."""
        sim = Simulation(feedback_budget=3000, keep_bytes=800)
        appended = [fb(i) for i in range(600)]
        for e in appended:
            sim.append(e)
        assert len(sim.state.segments) > 5
        assert sim.all_entries() == appended
        assert sim.state.feedback_total == 600
        assert feedback_bytes(sim.state.feedback_history) <= 3000
        head = state_object(sim.state)
        assert decode_state(head) == sim.state
        assert find_problems(head) == []

    def test_every_recent_id_is_recognised(self) -> None:
        """A retried append finds its ID in the head or among recently moved IDs."""
        sim = Simulation(feedback_budget=2000, keep_bytes=500)
        for i in range(300):
            sim.append(fb(i))
        for i in range(300):
            found = sim.state.find_feedback(f"e{i}") or sim.state.moved_to_segment(f"e{i}")
            assert found is not None

    def test_head_size_stays_flat(self) -> None:
        """With default budgets the head stays far under 1 MiB however long the history."""
        sim = Simulation()
        rng = random.Random(1)
        for i in range(3000):
            sim.append(fb(i, "".join(rng.choices(string.ascii_letters, k=200))))
        assert sim.state.segments
        assert value_bytes(state_object(sim.state).data or {}) < 300_000

    @FAST
    @given(
        sizes=st.lists(st.integers(1, 3000), min_size=1, max_size=60),
        feedback_budget=st.integers(500, 8000),
        keep_bytes=st.integers(0, 4000),
        segment_budget=st.integers(3500, 20_000),
    )
    def test_any_budgets_terminate_and_lose_nothing(
        self, sizes: list[int], feedback_budget: int, keep_bytes: int, segment_budget: int
    ) -> None:
        """Whatever the budgets and entry sizes, the loop ends and keeps every entry."""
        rng = random.Random(len(sizes))
        sim = Simulation(
            feedback_budget=feedback_budget, keep_bytes=keep_bytes, segment_budget=segment_budget
        )
        appended = [
            fb(i, "".join(rng.choices(string.ascii_letters, k=n))) for i, n in enumerate(sizes)
        ]
        for e in appended:
            sim.append(e)
        assert sim.all_entries() == appended
        for obj in sim.segments.values():
            assert value_bytes(obj.data or {}) <= segment_budget
