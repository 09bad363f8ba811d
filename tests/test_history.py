"""Ids are unique across the whole history; every kind of history pages out of the head.

On both backends (Kubernetes: the real API server).
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from remstate import (
    ErrorRecord,
    FeedbackEntry,
    InvalidInput,
    IterationRecord,
    MaxIterationsReached,
    StateManager,
    TaskState,
)
from remstate.schema import (
    KIND_ERRORS,
    KIND_ID_FILTERS,
    KIND_ITERATIONS,
    IdFilter,
    apply_compaction,
    decode_state,
    filter_page_object,
    find_problems,
    needs_filter_page,
    object_name,
    owner_reference,
    plan_moves,
    segment_object,
    segment_ref,
    state_object,
)
from remstate.store import Store
from tests.backends import CountingStore
from tests.helpers import T0, entry


def wordy(i: int, **fields: Any) -> FeedbackEntry:
    """Entry ``i`` with a longer description, so that the history pages out sooner."""
    return entry(i, description=f"finding {i}: " + "the loop re-reads the object " * 4, **fields)


def _build(store: Store, state: TaskState) -> None:
    """Write ``state`` as the manager would: head, then segments, then the head again.

    A bulk build: 100,000 increments one by one would take hours on a real API server.
    """
    bare = dataclasses.replace(
        TaskState.new(state.task_id, clock=lambda: T0), last_update=state.last_update
    )
    head = store.create(state_object(bare))
    owner = owner_reference(head)
    while (plan := plan_moves(state)) is not None:
        kind, moved = plan
        created = store.create(segment_object(state, moved, kind=kind, owner=owner))
        state = apply_compaction(state, segment_ref(created))
        while needs_filter_page(state):
            page = filter_page_object(state, n=state.next_segment_number, owner=owner)
            state = state.with_filter_page(segment_ref(store.create(page)))
    store.replace(state_object(state, resource_version=head.resource_version))


class TestFeedbackIdsAreNeverAppendedTwice:
    def test_an_old_id_appended_again_after_5000_newer_entries_is_kept_once(
        self, store: Store
    ) -> None:
        """An id appended again after 5,000 newer ones (past any recent window) is not doubled."""
        manager = StateManager(store)
        first = manager.append_feedback("t", wordy(0, id="first"))
        manager.append_feedback_many("t", [wordy(i) for i in range(1, 5001)])
        state = manager.get_state("t")
        assert state.find_feedback("first") is None
        assert "first" not in state.recent_moved_ids  # past the window of recent ids

        again = manager.append_feedback("t", wordy(9999, id="first"))
        assert again == first
        fresh = StateManager(store)  # a new process: only what is stored
        assert fresh.append_feedback("t", wordy(9998, id="first")) == first
        page = fresh.get_feedback_history("t", limit=10_000)
        ids = [e.id for e in page.entries]
        assert page.total == 5001
        assert ids.count("first") == 1

    def test_a_new_id_costs_one_request_with_a_long_history(self, store: Store) -> None:
        """With segments, appending a new id is still one write and no read (warm manager)."""
        counting = CountingStore(store)
        manager = StateManager(counting)  # type: ignore[arg-type]
        manager.append_feedback_many("t", [wordy(i) for i in range(5000)])
        assert len(manager.get_state("t").segments) >= 2
        counting.calls.clear()
        manager.append_feedback("t", wordy(6000))
        assert counting.calls == ["replace"]

    def test_a_segment_written_before_filters_is_read_then_filtered(self, store: Store) -> None:
        """An index without filters is still honoured: the segment is read, its filter stored."""
        manager = StateManager(store)
        manager.append_feedback_many("t", [wordy(i) for i in range(5000)])
        head = store.get(object_name("t"))
        state = decode_state(head)
        # As an older remstate wrote it: no filters, no recent window.
        old = dataclasses.replace(
            state,
            history_index=dataclasses.replace(
                state.history_index,
                segments=tuple(dataclasses.replace(s, id_filter=None) for s in state.segments),
                recent_moved_ids={},
            ),
        )
        store.replace(state_object(old, resource_version=head.resource_version))
        assert all(s.id_filter is None for s in decode_state(store.get(head.name)).segments)

        fresh = StateManager(store)
        assert fresh.append_feedback("t", wordy(3, id="fb-000003")).description.startswith(
            "finding 3:"
        )
        fresh.append_feedback("t", wordy(7000))
        after = decode_state(store.get(head.name))
        assert all(s.id_filter is not None for s in after.segments)
        assert fresh.get_feedback_history("t", limit=1).total == 5001


class TestIncrementKeys:
    def test_a_key_resent_after_its_record_moved_to_a_segment_does_not_increment(
        self, store: Store
    ) -> None:
        """A committed increment key, re-sent after its record left the head, returns its number."""
        manager = StateManager(store, max_iterations=10_000)
        assert manager.increment_iteration("t", op_id="STEP-1") == 1
        for i in range(2, 401):
            manager.increment_iteration("t", op_id=f"step-{i}")
        state = manager.get_state("t")
        assert state.segments_of(KIND_ITERATIONS)  # the records really moved out
        assert all(r.extra.get("op") != "STEP-1" for r in state.iteration_history)

        fresh = StateManager(store, max_iterations=10_000)
        assert fresh.increment_iteration("t", op_id="STEP-1") == 1
        assert fresh.increment_iteration("t", op_id="step-200") == 200
        after = fresh.get_state("t")
        assert after.iteration == after.iteration_total == 400
        assert find_problems(store.get(object_name("t"))) == []

    def test_a_committed_key_at_the_maximum_returns_its_number(self, store: Store) -> None:
        """Re-sending the key of the increment that reached the maximum is not a refusal."""
        manager = StateManager(store, max_iterations=2)
        manager.increment_iteration("t", op_id="a")
        assert manager.increment_iteration("t", op_id="b") == 2
        assert manager.increment_iteration("t", op_id="b") == 2
        with pytest.raises(MaxIterationsReached):
            manager.increment_iteration("t", op_id="c")

    @pytest.mark.parametrize("key", ["", "x" * 129, "tab\there", 7, b"bytes"])
    def test_bad_keys_are_refused_and_nothing_is_written(self, store: Store, key: object) -> None:
        """A key that is not 1 to 128 printable characters raises InvalidInput."""
        manager = StateManager(store)
        with pytest.raises(InvalidInput):
            manager.increment_iteration("t", op_id=key)  # type: ignore[arg-type]
        with pytest.raises(InvalidInput):
            manager.record_error("t", "boom", id=key)  # type: ignore[arg-type]
        assert store.list().items == []


class TestErrorIds:
    def test_an_error_id_resent_after_its_record_moved_to_a_segment_is_not_doubled(
        self, store: Store
    ) -> None:
        """A committed error id, re-sent after its record left the head, returns the record."""
        manager = StateManager(store)
        first = manager.record_error("t", "first failure", id="ERR-1")
        for i in range(150):
            manager.record_error("t", f"failure {i}: " + "x" * 400, id=f"err-{i}")
        state = manager.get_state("t")
        assert state.segments_of(KIND_ERRORS)
        assert all(r.extra.get("id") != "ERR-1" for r in state.error_messages)

        again = StateManager(store).record_error("t", "first failure", id="ERR-1")
        assert again == first
        page = StateManager(store).get_errors("t", limit=1000)
        assert page.total == 151
        assert [r.extra["id"] for r in page.records].count("ERR-1") == 1


class TestPaging:
    @pytest.mark.parametrize("newest_first", [False, True])
    def test_iterations_and_errors_page_across_segments(
        self, store: Store, newest_first: bool
    ) -> None:
        """Pages of 37, either way, cross head and segments and see every record once."""
        manager = StateManager(store, max_iterations=10_000)
        for i in range(300):
            manager.increment_iteration("t", note=f"n{i}")
        for i in range(120):
            manager.record_error("t", f"e{i} " + "y" * 400)
        state = manager.get_state("t")
        assert state.segments_of(KIND_ITERATIONS)
        assert state.segments_of(KIND_ERRORS)

        numbers: list[int] = []
        cursor = None
        while True:
            page = manager.get_iteration_history(
                "t", limit=37, cursor=cursor, newest_first=newest_first
            )
            numbers.extend(r.iteration for r in page.records)
            cursor = page.next_cursor
            if cursor is None:
                break
        expected = list(range(1, 301))
        assert numbers == (expected[::-1] if newest_first else expected)

        messages: list[str] = []
        cursor = None
        while True:
            errors = manager.get_errors("t", limit=37, cursor=cursor, newest_first=newest_first)
            messages.extend(r.message.split()[0] for r in errors.records)
            cursor = errors.next_cursor
            if cursor is None:
                break
        wanted = [f"e{i}" for i in range(120)]
        assert messages == (wanted[::-1] if newest_first else wanted)

    def test_a_cursor_of_another_kind_is_refused(self, store: Store) -> None:
        """A feedback cursor given to get_errors raises InvalidInput."""
        manager = StateManager(store)
        manager.append_feedback_many("t", [wordy(i) for i in range(3)])
        cursor = manager.get_feedback_history("t", limit=1).next_cursor
        assert cursor is not None
        manager.record_error("t", "boom")
        with pytest.raises(InvalidInput):
            manager.get_errors("t", cursor=cursor)


class TestLargeHistory:
    def test_a_hundred_thousand_iterations_and_errors_page_both_ways(self, store: Store) -> None:
        """100,000 iteration records and errors (built in bulk) take writes and page in full."""
        total = 100_000
        state = TaskState.new("big", clock=lambda: T0)
        iterations = tuple(
            IterationRecord(i, T0 + timedelta(seconds=i), "", {"op": f"op-{i:06d}"})
            for i in range(1, total + 1)
        )
        errors = tuple(
            ErrorRecord(T0 + timedelta(seconds=i), f"failure {i}", {"id": f"err-{i:06d}"})
            for i in range(total)
        )
        state = dataclasses.replace(
            state, iteration=total, iteration_history=iterations, error_messages=errors
        )
        _build(store, state)
        head = store.get(object_name("big"))
        assert find_problems(head) == []
        stored = decode_state(head)
        assert stored.iteration_total == stored.error_total == total
        assert len(stored.segments_of(KIND_ITERATIONS)) > 1
        assert stored.segments_of(KIND_ID_FILTERS)  # filters left the head too

        manager = StateManager(store, max_iterations=total + 10)
        assert manager.increment_iteration("big", op_id="late") == total + 1
        assert manager.increment_iteration("big", op_id="op-000007") == 7  # deep in a segment
        assert manager.increment_iteration("big", op_id="late") == total + 1
        late = manager.record_error("big", "late failure", id="late")
        assert manager.record_error("big", "again", id="err-000042").message == "failure 42"
        assert manager.get_state("big").iteration == total + 1

        for newest_first in (False, True):
            numbers: list[int] = []
            cursor = None
            while True:
                page = manager.get_iteration_history(
                    "big", limit=5000, cursor=cursor, newest_first=newest_first
                )
                numbers.extend(r.iteration for r in page.records)
                cursor = page.next_cursor
                if cursor is None:
                    break
            expected = list(range(1, total + 2))
            assert numbers == (expected[::-1] if newest_first else expected)

            ids: list[str] = []
            cursor = None
            while True:
                errors = manager.get_errors(
                    "big", limit=5000, cursor=cursor, newest_first=newest_first
                )
                ids.extend(r.extra["id"] for r in errors.records)
                cursor = errors.next_cursor
                if cursor is None:
                    break
            wanted = [f"err-{i:06d}" for i in range(total)] + [late.extra["id"]]
            assert ids == (wanted[::-1] if newest_first else wanted)


class TestIdFilter:
    def test_no_id_it_holds_is_ever_missed(self) -> None:
        """Every id put in is reported as maybe held; most others are not."""
        ids = [f"id-{i}" for i in range(5000)]
        held = IdFilter.of(ids)
        assert all(i in held for i in ids)
        others = sum(f"other-{i}" in held for i in range(20_000))
        assert others <= 5  # about 1e-5 expected: 0.2 in 20,000

    def test_the_stored_form_reads_back(self) -> None:
        """to_dict and from_stored round-trip; an unknown form reads as unknown (None)."""
        held = IdFilter.of(["a", "b"])
        assert IdFilter.from_stored(held.to_dict()) == held
        assert IdFilter.from_stored({"k": 3, "bloom": "AAAA", "v": 2}) is None
        assert IdFilter.from_stored({"k": 3, "bloom": "not base64!"}) is None
        assert IdFilter.from_stored("bloom") is None
