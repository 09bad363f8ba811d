"""The operations' pure state changes, with no store at all.

What an operation reads from history segments is given as data (``Found``),
as the manager gives it after its reads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from remstate import mutations
from remstate.errors import InvalidInput, MaxIterationsReached
from remstate.mutations import Found
from remstate.schema import (
    ErrorRecord,
    FeedbackEntry,
    IdFilter,
    IterationRecord,
    Policy,
    Status,
    TaskState,
)
from tests.helpers import T0, entry

NOW = T0 + timedelta(hours=1)


def state(iteration: int = 0, feedback: int = 0, **fields: Any) -> TaskState:
    """Task ``t`` at this iteration, with ``feedback`` entries in its head."""
    base = TaskState.new("t", clock=lambda: T0)
    records = tuple(IterationRecord(n, T0, "", {"op": f"op-{n}"}) for n in range(1, iteration + 1))
    return dataclasses.replace(
        base,
        iteration=iteration,
        iteration_history=records,
        feedback_history=tuple(entry(i) for i in range(feedback)),
        **fields,
    )


def increment(s: TaskState, found: Found, max_iterations: int = 3) -> tuple[Any, int]:
    return mutations.increment(
        s, op_id="key", note="n", now=NOW, max_iterations=max_iterations, found=found
    )


class TestIncrement:
    def test_adds_one_iteration_with_its_record(self) -> None:
        new, number = increment(state(1), Found())
        assert number == 2
        assert new is not None
        assert new.iteration == 2
        assert new.iteration_history[-1] == IterationRecord(2, NOW, "n", {"op": "key"})

    @pytest.mark.parametrize(
        ("iteration", "max_iterations", "known", "expected"),
        [
            pytest.param(3, 3, None, MaxIterationsReached, id="at max: refused"),
            pytest.param(3, 3, 2, 2, id="known key at max: its number, no write"),
            pytest.param(1, 3, 1, 1, id="known key below max: its number, no write"),
            pytest.param(0, 1, None, 1, id="below max: written"),
        ],
    )
    def test_the_maximum_and_the_key(
        self, iteration: int, max_iterations: int, known: int | None, expected: object
    ) -> None:
        found = Found({"key": IterationRecord(known, T0, "", {"op": "key"})} if known else {})
        s = state(iteration)
        if expected is MaxIterationsReached:
            with pytest.raises(MaxIterationsReached) as raised:
                increment(s, found, max_iterations)
            assert (raised.value.iteration, raised.value.max_iterations) == (
                iteration,
                max_iterations,
            )
            return
        new, number = increment(s, found, max_iterations)
        assert number == expected
        assert (new is None) == (known is not None)

    def test_a_record_of_another_kind_under_the_key_is_not_a_match(self) -> None:
        new, number = increment(state(0), Found({"key": ErrorRecord(T0, "boom")}))
        assert (number, new is not None) == (1, True)

    def test_a_bad_note_is_refused(self) -> None:
        with pytest.raises(InvalidInput):
            mutations.increment(
                state(), op_id="k", note="x" * 70_000, now=NOW, max_iterations=3, found=Found()
            )

    def test_built_filters_are_written_with_the_increment(self) -> None:
        s = state(feedback=2).with_segment(1, "task-t-state-h1", "u1", 2)
        id_filter = IdFilter.of(["fb-000000", "fb-000001"])
        new, _ = increment(s, Found(filters={1: id_filter}))
        assert new is not None
        assert [ref.id_filter for ref in new.segments] == [id_filter]


class TestIncrementEnforcesTheStoredLimit:
    @pytest.mark.parametrize(
        ("stored", "default", "at", "limit"),
        [
            pytest.param(3, 10, 3, 3, id="stored 3 beats a default of 10"),
            pytest.param(10, 3, 3, None, id="stored 10 beats a default of 3"),
            pytest.param(None, 3, 3, 3, id="none stored: the default"),
            pytest.param(None, 10, 3, None, id="none stored: the default, not reached"),
        ],
    )
    def test_the_limit_is_the_stored_one(
        self, stored: int | None, default: int, at: int, limit: int | None
    ) -> None:
        """The stored limit wins over the writer's; the writer's only when none is stored."""
        s = state(at, policy=Policy(max_iterations=stored))
        if limit is not None:
            with pytest.raises(MaxIterationsReached) as raised:
                increment(s, Found(), default)
            assert (raised.value.iteration, raised.value.max_iterations) == (at, limit)
            return
        new, number = increment(s, Found(), default)
        assert (number, new is not None) == (at + 1, True)
        assert new.policy == s.policy  # an increment leaves the policy as it was

    def test_a_committed_key_still_returns_its_number_past_a_lowered_limit(self) -> None:
        """Idempotency first: a retry of an increment that committed is not refused."""
        s = state(3, policy=Policy(max_iterations=2))
        found = Found({"key": IterationRecord(3, T0, "", {"op": "key"})})
        assert increment(s, found, 10) == (None, 3)


DEFAULTS = Policy(max_iterations=10, ttl=timedelta(days=7))


class TestSetPolicy:
    def set(self, s: TaskState, **given: Any) -> tuple[TaskState | None, Policy]:
        values: dict[str, Any] = {"max_iterations": None, "ttl": None, "clear_ttl": False}
        values.update(given)
        return mutations.set_policy(s, defaults=DEFAULTS, **values)

    def test_changes_what_is_given_and_keeps_the_rest(self) -> None:
        """A new limit keeps the stored ttl; a new ttl keeps the stored limit."""
        s = state(policy=Policy(3, timedelta(days=1)))
        new, policy = self.set(s, max_iterations=5)
        assert policy == Policy(5, timedelta(days=1))
        assert new is not None
        assert new.policy == policy
        _, policy = self.set(s, ttl=timedelta(days=14))
        assert policy == Policy(3, timedelta(days=14))

    def test_clear_ttl(self) -> None:
        """``clear_ttl`` drops the ttl (the cleanup's default applies) and keeps the limit."""
        new, policy = self.set(state(policy=Policy(3, timedelta(days=1))), clear_ttl=True)
        assert policy == Policy(3, None)
        assert new is not None

    def test_a_state_without_a_policy_takes_the_defaults_then_the_given_values(self) -> None:
        """A state written before policies stores the writer's defaults with what is given."""
        new, policy = self.set(state(), max_iterations=4)
        assert policy == Policy(4, timedelta(days=7))
        assert new is not None
        assert new.policy == policy
        _, policy = self.set(state(), clear_ttl=True)
        assert policy == Policy(10, None)

    def test_unchanged_is_no_write(self) -> None:
        """The same values again write nothing and return the stored policy."""
        s = state(policy=Policy(3, timedelta(days=1)))
        assert self.set(s, max_iterations=3) == (None, s.policy)

    def test_a_limit_below_the_counter_is_stored(self) -> None:
        """Lowering the limit under the counter is allowed: the next increment is refused."""
        new, _ = self.set(state(5, policy=Policy(10)), max_iterations=2)
        assert new is not None
        with pytest.raises(MaxIterationsReached):
            increment(new, Found(), 10)


class TestAppendBatch:
    @pytest.mark.parametrize(
        ("head", "batch", "stored", "appended"),
        [
            pytest.param(0, [0, 1], [], [0, 1], id="all new"),
            pytest.param(0, [0, 1, 0], [], [0, 1], id="a duplicate in the batch: once"),
            pytest.param(0, [0, 1], [1], [0], id="an id stored already: not again"),
            pytest.param(0, [0, 1], [0, 1], [], id="all stored: no write"),
            pytest.param(0, [], [], [], id="empty: no write"),
            pytest.param(2, [2], [], [2], id="after the head's entries"),
        ],
    )
    def test_appends_what_is_not_stored(
        self, head: int, batch: list[int], stored: list[int], appended: list[int]
    ) -> None:
        s = state(feedback=head)
        # Stored entries differ from the given ones (another author): which one is returned shows.
        known = {entry(i).id: entry(i, author="stored") for i in stored}
        new, result = mutations.append_batch(s, [entry(i) for i in batch], found=Found(known))
        assert [e.id for e in result] == [entry(i).id for i in batch]
        assert [e.author for e in result] == [
            "stored" if i in stored else entry(i).author for i in batch
        ]
        if not appended:
            assert new is None
            return
        assert new is not None
        added = new.feedback_history[len(s.feedback_history) :]
        assert [e.id for e in added] == [entry(i).id for i in appended]


def archived(i: int, *, resolved: bool = False) -> FeedbackEntry:
    """Entry ``i`` as read from a segment."""
    e = entry(i)
    return dataclasses.replace(e, resolved=resolved, resolved_at=T0 if resolved else None)


class TestResolve:
    def test_resolves_an_entry_in_the_head(self) -> None:
        new, result = mutations.resolve(
            state(feedback=2), "fb-000001", resolved=True, now=NOW, archived=None
        )
        assert new is not None
        assert (result.resolved, result.resolved_at) == (True, NOW)
        assert new.feedback_history[1] == result
        assert new.feedback_history[0] == entry(0)

    @pytest.mark.parametrize(
        ("start", "resolved", "writes"),
        [
            pytest.param(False, True, True, id="resolve"),
            pytest.param(True, False, True, id="unresolve"),
            pytest.param(True, True, False, id="resolved already: no write"),
            pytest.param(False, False, False, id="unresolved already: no write"),
        ],
    )
    def test_in_the_head_and_archived(self, start: bool, resolved: bool, writes: bool) -> None:
        head = dataclasses.replace(
            state(feedback=1),
            feedback_history=(archived(0, resolved=start),),
        )
        new, result = mutations.resolve(
            head, "fb-000000", resolved=resolved, now=NOW, archived=None
        )
        assert (new is not None) == writes
        assert result.resolved == resolved
        new, result = mutations.resolve(
            state(), "fb-000000", resolved=resolved, now=NOW, archived=archived(0, resolved=start)
        )
        assert (new is not None) == writes
        assert result.resolved == resolved
        if writes:
            assert new is not None
            at = NOW if resolved else None
            assert new.archived_resolutions == {"fb-000000": at}
            assert result.resolved_at == at

    def test_an_archived_entry_is_resolved_in_the_overlay_only(self) -> None:
        s = state(feedback=1)
        new, _ = mutations.resolve(s, "fb-000009", resolved=True, now=NOW, archived=archived(9))
        assert new is not None
        assert new.feedback_history == s.feedback_history
        assert new.archived_resolutions == {"fb-000009": NOW}

    @pytest.mark.parametrize(
        "given",
        [pytest.param(None, id="not found"), pytest.param(archived(3), id="another entry")],
    )
    def test_an_unknown_id_is_refused(self, given: FeedbackEntry | None) -> None:
        with pytest.raises(InvalidInput, match="no feedback with id 'nope'"):
            mutations.resolve(state(feedback=2), "nope", resolved=True, now=NOW, archived=given)

    def test_the_overlay_cap(self) -> None:
        full = state(archived_resolutions={"fb-000001": NOW, "fb-000002": NOW})
        with pytest.raises(InvalidInput, match="already holds 2 resolutions"):
            mutations.resolve(
                full, "fb-000003", resolved=True, now=NOW, archived=archived(3), resolutions_limit=2
            )
        # One already in the overlay may still change: it takes no new room.
        new, result = mutations.resolve(
            full,
            "fb-000001",
            resolved=False,
            now=NOW,
            archived=archived(1, resolved=True),
            resolutions_limit=2,
        )
        assert new is not None
        assert new.archived_resolutions == {"fb-000001": None, "fb-000002": NOW}
        assert not result.resolved


class TestSmallMutations:
    def test_set_status(self) -> None:
        assert mutations.set_status(state(), Status.PENDING) == (None, None)
        new, _ = mutations.set_status(state(), Status.COMPLETED)
        assert new is not None
        assert new.status == Status.COMPLETED

    def test_record_error(self) -> None:
        record = ErrorRecord(NOW, "boom", {"id": "e1"})
        new, result = mutations.record_error(state(), record, key="e1", found=Found())
        assert new is not None
        assert (new.error_messages, result) == ((record,), record)
        stored = ErrorRecord(T0, "first", {"id": "e1"})
        assert mutations.record_error(state(), record, key="e1", found=Found({"e1": stored})) == (
            None,
            stored,
        )

    @pytest.mark.parametrize(
        ("before", "updates", "remove", "after", "writes"),
        [
            pytest.param({"a": 1}, {"b": 2}, [], {"a": 1, "b": 2}, True, id="merge"),
            pytest.param({"a": 1}, {"a": 3}, [], {"a": 3}, True, id="overwrite"),
            pytest.param({"a": 1, "b": 2}, {}, ["b", "c"], {"a": 1}, True, id="remove"),
            pytest.param({"a": 1}, {"a": 1}, ["c"], {"a": 1}, False, id="no change: no write"),
        ],
    )
    def test_update_metadata(
        self,
        before: dict[str, Any],
        updates: dict[str, Any],
        remove: list[str],
        after: dict[str, Any],
        writes: bool,
    ) -> None:
        new, merged = mutations.update_metadata(state(metadata=before), updates, remove)
        assert merged == after
        assert (new is not None) == writes
        if new is not None:
            assert new.metadata == after


def _replace(**fields: Any) -> Callable[[TaskState], object]:
    return lambda s: dataclasses.replace(s, **fields)


class TestUpdate:
    def test_unchanged_is_no_write_and_a_change_is_written(self) -> None:
        s = state(feedback=1)
        assert mutations.update(s, s) == (None, None)
        new, _ = mutations.update(s, dataclasses.replace(s, metadata={"k": "v"}))
        assert new is not None
        assert new.metadata == {"k": "v"}

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            pytest.param(lambda s: {"not": "a state"}, "returned dict", id="not a state"),
            pytest.param(_replace(task_id="other"), "task_id", id="task id"),
            pytest.param(_replace(iteration=5), "increment_iteration", id="counter"),
            pytest.param(
                _replace(iteration_history=()), "increment_iteration", id="iteration records"
            ),
            pytest.param(_replace(archived_resolutions={"x": None}), "history index", id="overlay"),
            pytest.param(_replace(policy=Policy(max_iterations=99)), "set_policy", id="policy"),
            pytest.param(
                lambda s: dataclasses.replace(s, feedback_history=(entry(0), entry(0))),
                "unique",
                id="duplicate feedback ids",
            ),
            pytest.param(
                lambda s: dataclasses.replace(
                    s,
                    feedback_history=(
                        *s.feedback_history,
                        dataclasses.replace(entry(5), description="x" * 70_000),
                    ),
                ),
                "description",
                id="an invalid new entry",
            ),
        ],
    )
    def test_refuses_what_an_update_may_not_do(
        self, change: Callable[[TaskState], object], message: str
    ) -> None:
        s = state(iteration=1, feedback=1)
        with pytest.raises(InvalidInput, match=message):
            mutations.update(s, change(s))
