"""An operation whose write may have committed says so when it gives up, on both backends.

The store is real (the embedded one, or the real API server); the
``LosesResponses`` wrapper makes its writes fail as a lost answer does, with
an ``Unavailable`` that may or may not have applied. The real outages (a
lost answer from the API server, etcd down) are in ``test_outage.py``.
"""

from __future__ import annotations

import functools

import pytest

from remstate.errors import OutcomeUnknown, Unavailable
from remstate.manager import StateManager
from remstate.retry import RetryPolicy
from remstate.store import Store
from tests.backends import LosesResponses

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
