"""An operation whose write may have committed says so when it gives up, on both backends.

The store is real (the embedded one, or the real API server); the
``LosesResponses`` wrapper makes its writes fail as a lost answer does, with
an ``Unavailable`` that may or may not have applied. The real outages (a
lost answer from the API server, etcd down) are in ``test_outage.py``.
"""

from __future__ import annotations

import dataclasses
import functools

import pytest

from remstate.errors import OutcomeUnknown, Unavailable
from remstate.manager import StateManager
from remstate.retry import RetryPolicy
from remstate.schema import plan_compaction
from remstate.store import Store
from tests.backends import LosesResponses
from tests.helpers import entry

#: Short: every test here runs out of retries on purpose.
DEADLINE = 0.5
FOREVER = 10**6
#: Whether a lost write may have applied -> what the operation raises when it gives up.
OUTCOMES = [(True, OutcomeUnknown), (False, Unavailable)]


def _lossy(
    store: Store, methods: set[str], *, maybe_applied: bool, commit: bool
) -> tuple[StateManager, LosesResponses]:
    """A manager whose ``methods`` fail, once ``losses`` is set, as if their answers were lost."""
    lossy = LosesResponses(
        store,
        0,
        methods=frozenset(methods),
        error=functools.partial(Unavailable, maybe_applied=maybe_applied),  # type: ignore[arg-type]
        commit=commit,
    )
    return StateManager(lossy, retry=RetryPolicy(deadline=DEADLINE)), lossy  # type: ignore[arg-type]


class TestIncrement:
    @pytest.mark.parametrize(
        ("maybe_applied", "expected"), [(True, OutcomeUnknown), (False, Unavailable)]
    )
    def test_a_write_that_may_have_applied_is_outcome_unknown(
        self, store: Store, maybe_applied: bool, expected: type
    ) -> None:
        """Only a write that may have reached the store makes the outcome unknown."""
        manager, lossy = _lossy(store, {"replace"}, maybe_applied=maybe_applied, commit=False)
        manager.increment_iteration("t")
        lossy.losses = FOREVER
        with pytest.raises(Unavailable) as caught:
            manager.increment_iteration("t")
        assert type(caught.value) is expected
        assert StateManager(store).get_state("t").iteration == 1

    def test_a_committed_write_that_no_read_confirms_is_outcome_unknown(self, store: Store) -> None:
        """The write commits, its answer and every read after it are lost: OutcomeUnknown."""
        manager, lossy = _lossy(store, {"replace", "get"}, maybe_applied=True, commit=True)
        manager.increment_iteration("t")  # remembered: the next write is one replace, no get
        lossy.losses = FOREVER
        with pytest.raises(OutcomeUnknown) as caught:
            manager.increment_iteration("t")
        assert "may have committed" in str(caught.value)
        assert caught.value.task_id == "t"
        assert StateManager(store).get_state("t").iteration == 2  # it had


class TestDelete:
    @pytest.mark.parametrize(
        ("maybe_applied", "expected"), [(True, OutcomeUnknown), (False, Unavailable)]
    )
    def test_a_delete_that_may_have_applied_is_outcome_unknown(
        self, store: Store, maybe_applied: bool, expected: type
    ) -> None:
        """A delete whose answer is lost, and never confirmed, is OutcomeUnknown."""
        manager, lossy = _lossy(store, {"delete"}, maybe_applied=maybe_applied, commit=False)
        manager.increment_iteration("t")
        lossy.losses = FOREVER
        with pytest.raises(Unavailable) as caught:
            manager.delete_state("t")
        assert type(caught.value) is expected


def _bulky(i: int) -> object:
    return entry(i, description=f"{i} " + "lorem ipsum dolor sit amet " * 16)


def _fill_until_the_next_append_compacts(manager: StateManager, task_id: str) -> int:
    """Append until one more entry would move history to a segment; the next entry's number."""
    i = 0
    while True:
        state = manager.get_or_create_state(task_id)
        more = (*state.feedback_history, _bulky(i))
        if plan_compaction(dataclasses.replace(state, feedback_history=more)) is not None:
            return i
        manager.append_feedback(task_id, _bulky(i))  # type: ignore[arg-type]
        i += 1


def _segments(store: Store) -> list[object]:
    return list(store.list(label_selector="remstate.io/role=history-segment").items)


class TestSegments:
    def test_a_segment_create_that_may_have_applied_is_not_outcome_unknown(
        self, store: Store
    ) -> None:
        """The head is never sent when a segment create fails: plain Unavailable, head unchanged."""
        manager, lossy = _lossy(store, {"create"}, maybe_applied=True, commit=False)
        i = _fill_until_the_next_append_compacts(manager, "h")
        lossy.losses = FOREVER
        with pytest.raises(Unavailable) as caught:
            manager.append_feedback("h", _bulky(i))  # type: ignore[arg-type]
        assert type(caught.value) is Unavailable
        assert StateManager(store).get_state("h").feedback_total == i

    def test_a_head_write_refused_as_unavailable_leaves_no_orphan_segment(
        self, store: Store
    ) -> None:
        """A head write that certainly did not apply (503, refused) discards its new segments."""
        manager, lossy = _lossy(store, {"replace"}, maybe_applied=False, commit=False)
        i = _fill_until_the_next_append_compacts(manager, "h")
        lossy.losses = FOREVER
        with pytest.raises(Unavailable) as caught:
            manager.append_feedback("h", _bulky(i))  # type: ignore[arg-type]
        assert type(caught.value) is Unavailable
        assert _segments(store) == []
        assert StateManager(store).get_state("h").feedback_total == i
