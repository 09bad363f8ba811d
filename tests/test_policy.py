"""The per-task policy, stored with the task: every writer enforces the stored limit.

On both backends (Kubernetes: the real API server). Writers configured
differently (``max_iterations`` 3 and 10) share one task, in one process and
in several; a head written before policies existed is written raw through
the store, as an older remstate left it.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from remstate import InvalidInput, MaxIterationsReached, Policy, StateManager, StateNotFound
from remstate.schema import (
    ANNOTATION_MAX_ITERATIONS,
    ANNOTATION_TTL,
    KEY_POLICY,
    IterationRecord,
    TaskState,
    find_problems,
    object_name,
    state_object,
    ttl_of,
)
from remstate.store import Store, StoredObject
from tests.backends import StoreSpec

TASK = "42"
TWO_WEEKS = timedelta(days=14)


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def three(store: Store, clock: Clock) -> StateManager:
    """A writer configured with a limit of 3."""
    return StateManager(store, max_iterations=3, clock=clock)


@pytest.fixture
def ten(store: Store, clock: Clock) -> StateManager:
    """A writer configured with a limit of 10."""
    return StateManager(store, max_iterations=10, clock=clock)


def head(store: Store) -> StoredObject:
    return store.get(object_name(TASK))


def increments(manager: StateManager, n: int = 20) -> int:
    """Increment until refused (at most ``n`` times); how many succeeded."""
    for done in range(n):
        try:
            manager.increment_iteration(TASK)
        except MaxIterationsReached:
            return done
    return n


def legacy_head(store: Store, clock: Clock, iteration: int = 0) -> StoredObject:
    """A head as remstate wrote it before policies: no ``policy`` key, no policy annotations."""
    records = tuple(IterationRecord(n, clock()) for n in range(1, iteration + 1))
    state = dataclasses.replace(
        TaskState.new(TASK, clock=clock), iteration=iteration, iteration_history=records
    )
    written = store.create(state_object(state))
    assert written.data is not None
    assert KEY_POLICY not in written.data
    assert ANNOTATION_MAX_ITERATIONS not in written.annotations
    return written


class TestTwoWritersOneLimit:
    @pytest.mark.parametrize(("creator", "limit"), [("three", 3), ("ten", 10)])
    def test_both_stop_at_the_limit_stored_at_creation(
        self,
        request: pytest.FixtureRequest,
        three: StateManager,
        ten: StateManager,
        creator: str,
        limit: int,
    ) -> None:
        """Whoever creates the task stores its limit; the other writer enforces it too."""
        request.getfixturevalue(creator).get_or_create_state(TASK)
        assert increments(three, 6) + increments(ten, 6) == min(limit, 12)
        for manager in (three, ten):
            with pytest.raises(MaxIterationsReached) as raised:
                manager.increment_iteration(TASK)
            assert raised.value.max_iterations == limit
        assert three.get_state(TASK).iteration == limit

    def test_an_explicit_limit_at_creation_beats_both_defaults(
        self, three: StateManager, ten: StateManager
    ) -> None:
        """``get_or_create_state(max_iterations=5, ttl="14d")`` stores those, not the defaults."""
        state = three.get_or_create_state(TASK, max_iterations=5, ttl="14d")
        assert state.policy == Policy(5, TWO_WEEKS)
        assert increments(ten) + increments(three) == 5
        # An existing task keeps its policy: a create's arguments are not a change.
        assert ten.get_or_create_state(TASK, max_iterations=9).policy == Policy(5, TWO_WEEKS)

    def test_the_managers_default_ttl_is_stored(self, store: Store, clock: Clock) -> None:
        """``StateManager(ttl="7d")`` gives the tasks it creates a ttl of 7 days."""
        manager = StateManager(store, ttl="7d", clock=clock)
        manager.increment_iteration(TASK)
        assert manager.get_state(TASK).policy == Policy(10, timedelta(days=7))
        assert ttl_of(head(store)) == timedelta(days=7)


class TestSetPolicy:
    def test_raising_the_limit_lets_every_writer_go_on(
        self, three: StateManager, ten: StateManager
    ) -> None:
        """At 3 of 3, one writer raises the limit to 5: the other, which saw 3, goes on at once."""
        three.get_or_create_state(TASK)
        assert increments(three) == 3
        assert ten.set_policy(TASK, max_iterations=5) == Policy(5)
        assert three.increment_iteration(TASK) == 4  # its last-seen object said 3 of 3
        assert ten.increment_iteration(TASK) == 5
        with pytest.raises(MaxIterationsReached):
            three.increment_iteration(TASK)

    def test_lowering_the_limit_stops_every_writer_at_once(
        self, three: StateManager, ten: StateManager
    ) -> None:
        """At 1 of 10, one writer lowers the limit to 2: the other, which saw 10, stops at 2."""
        ten.get_or_create_state(TASK)
        three.increment_iteration(TASK)  # three caches a state whose limit is 10
        assert ten.set_policy(TASK, max_iterations=2) == Policy(2)
        assert three.increment_iteration(TASK) == 2
        before = head(ten.store).resource_version
        for manager in (three, ten):
            with pytest.raises(MaxIterationsReached):
                manager.increment_iteration(TASK)
        assert head(ten.store).resource_version == before

    def test_below_the_counter_refuses_the_next_increment(self, ten: StateManager) -> None:
        """A limit under the counter is stored; increments are refused, nothing written."""
        increments(ten, 4)
        assert ten.set_policy(TASK, max_iterations=2).max_iterations == 2
        with pytest.raises(MaxIterationsReached) as raised:
            ten.increment_iteration(TASK)
        assert (raised.value.iteration, raised.value.max_iterations) == (4, 2)

    def test_ttl_changes_and_clears(self, store: Store, ten: StateManager) -> None:
        """``ttl`` keeps the limit; ``clear_ttl`` drops the ttl and keeps the limit."""
        ten.get_or_create_state(TASK, max_iterations=4)
        assert ten.set_policy(TASK, ttl=TWO_WEEKS) == Policy(4, TWO_WEEKS)
        assert ten.set_policy(TASK, ttl="36h") == Policy(4, timedelta(hours=36))
        assert ten.set_policy(TASK, clear_ttl=True) == Policy(4)
        assert ten.get_state(TASK).policy == Policy(4)

    def test_the_same_policy_again_writes_nothing(self, store: Store, ten: StateManager) -> None:
        """Setting what is stored is a no-op: the resourceVersion does not move."""
        ten.set_policy(TASK, max_iterations=4)
        before = head(store).resource_version
        assert ten.set_policy(TASK, max_iterations=4) == Policy(4)
        assert head(store).resource_version == before

    def test_creates_a_missing_task(self, three: StateManager) -> None:
        """On a task with no state, the state is created with the given values and defaults."""
        assert three.set_policy(TASK, ttl="1d") == Policy(3, timedelta(days=1))
        assert three.get_state(TASK).iteration == 0

    def test_the_key_of_an_increment_still_returns_its_number(
        self, three: StateManager, ten: StateManager
    ) -> None:
        """Idempotency is unchanged: a committed increment retried at the limit is not refused."""
        three.get_or_create_state(TASK)
        increments(three, 2)
        assert three.increment_iteration(TASK, op_id="step-3") == 3
        ten.set_policy(TASK, max_iterations=3)
        assert ten.increment_iteration(TASK, op_id="step-3") == 3
        assert ten.get_state(TASK).iteration == 3


#: Bad arguments to set_policy: each refused with InvalidInput before anything is written.
BAD_SET_POLICY: list[Any] = [
    pytest.param({}, id="nothing to change"),
    pytest.param({"max_iterations": 0}, id="limit 0"),
    pytest.param({"max_iterations": -3}, id="negative limit"),
    pytest.param({"max_iterations": True}, id="limit a bool"),
    pytest.param({"max_iterations": "5"}, id="limit a string"),
    pytest.param({"max_iterations": 2_000_000_000}, id="limit too high"),
    pytest.param({"ttl": "soon"}, id="ttl not a duration"),
    pytest.param({"ttl": -60}, id="negative ttl"),
    pytest.param({"ttl": timedelta(seconds=0.5)}, id="ttl under a second"),
    pytest.param({"ttl": [1]}, id="ttl a list"),
    pytest.param({"ttl": "1d", "clear_ttl": True}, id="ttl and clear_ttl"),
    pytest.param({"clear_ttl": "yes"}, id="clear_ttl not a bool"),
]


class TestBadInput:
    @pytest.mark.parametrize("arguments", BAD_SET_POLICY)
    def test_set_policy_writes_nothing(
        self, store: Store, ten: StateManager, arguments: dict[str, Any]
    ) -> None:
        """InvalidInput, and the stored object (or its absence) is as it was."""
        with pytest.raises(InvalidInput):
            ten.set_policy("missing", **arguments)
        with pytest.raises(StateNotFound):
            ten.get_state("missing")
        ten.get_or_create_state(TASK, max_iterations=4)
        before = head(store)
        with pytest.raises(InvalidInput):
            ten.set_policy(TASK, **arguments)
        assert head(store).resource_version == before.resource_version

    @pytest.mark.parametrize(
        "arguments",
        [{"max_iterations": 0}, {"ttl": "x"}, {"max_iterations": 1.5}, {"ttl": 0}],
        ids=["limit 0", "ttl x", "limit 1.5", "ttl 0"],
    )
    def test_get_or_create_writes_nothing(self, ten: StateManager, arguments: Any) -> None:
        """A bad policy at creation is refused, and no state is created."""
        with pytest.raises(InvalidInput):
            ten.get_or_create_state(TASK, **arguments)
        with pytest.raises(StateNotFound):
            ten.get_state(TASK)

    @pytest.mark.parametrize(
        "options",
        [{"ttl": "forever"}, {"ttl": 0}, {"max_iterations": 2_000_000_000}],
        ids=["ttl forever", "ttl 0", "limit too high"],
    )
    def test_the_managers_defaults_are_checked(self, store: Store, options: Any) -> None:
        """A bad default limit or ttl is refused when the manager is built."""
        with pytest.raises(InvalidInput):
            StateManager(store, **options)


class TestStateWrittenBeforePolicies:
    def test_read_and_incremented_with_the_managers_default(
        self, store: Store, clock: Clock, three: StateManager, ten: StateManager
    ) -> None:
        """No stored limit: a writer uses its own; its write stores it, and then it binds all."""
        legacy_head(store, clock)
        assert three.get_state(TASK).policy == Policy()
        assert find_problems(head(store)) == []

        assert three.increment_iteration(TASK) == 1

        stored = head(store)
        assert stored.data is not None
        assert stored.data[KEY_POLICY] == '{"max_iterations":3}'
        assert stored.annotations[ANNOTATION_MAX_ITERATIONS] == "3"
        assert ANNOTATION_TTL not in stored.annotations
        assert increments(ten) == 2  # the limit three stored, not ten's own

    def test_refused_at_the_default_and_nothing_written(
        self, store: Store, clock: Clock, three: StateManager, ten: StateManager
    ) -> None:
        """At 3 iterations and no stored limit, a writer of 3 refuses; one of 10 goes on."""
        before = legacy_head(store, clock, iteration=3)
        with pytest.raises(MaxIterationsReached):
            three.increment_iteration(TASK)
        assert head(store).resource_version == before.resource_version
        assert ten.increment_iteration(TASK) == 4
        assert ten.get_state(TASK).policy == Policy(10)

    def test_any_write_stores_the_policy(
        self, store: Store, clock: Clock, ten: StateManager
    ) -> None:
        """Not only an increment: a status change stores the writer's defaults too."""
        legacy_head(store, clock)
        ten.set_status(TASK, "in_progress")
        assert ten.get_state(TASK).policy == Policy(10)
        assert head(store).annotations[ANNOTATION_MAX_ITERATIONS] == "10"

    def test_set_policy_fills_it_from_the_given_values(
        self, store: Store, clock: Clock, three: StateManager
    ) -> None:
        """``set_policy(ttl=...)`` on such a state stores the ttl and this writer's limit."""
        legacy_head(store, clock)
        assert three.set_policy(TASK, ttl="14d") == Policy(3, TWO_WEEKS)
        assert ttl_of(head(store)) == TWO_WEEKS

    def test_keys_of_a_newer_remstate_are_kept_beside_the_policy(
        self, store: Store, clock: Clock, ten: StateManager
    ) -> None:
        """An unknown data key survives every write: what an older reader does with ``policy``."""
        obj = legacy_head(store, clock)
        assert obj.data is not None
        store.replace(dataclasses.replace(obj, data={**obj.data, "retention_class": "gold"}))
        ten.set_policy(TASK, max_iterations=4)
        ten.increment_iteration(TASK)
        stored = head(store)
        assert stored.data is not None
        assert stored.data["retention_class"] == "gold"
        assert stored.data[KEY_POLICY] == '{"max_iterations":4}'


class TestAnnotations:
    def test_kept_current_on_every_write(self, store: Store, ten: StateManager) -> None:
        """ttl and max-iterations annotations follow the policy, and survive other writes."""

        def annotations() -> tuple[str | None, str | None]:
            obj = head(store)
            return obj.annotations.get(ANNOTATION_TTL), obj.annotations.get(
                ANNOTATION_MAX_ITERATIONS
            )

        ten.get_or_create_state(TASK, ttl="14d")
        assert annotations() == ("1209600", "10")
        ten.increment_iteration(TASK)
        ten.append_feedback(
            TASK, author="a", severity="low", issue_type="bug", description="d", id="f1"
        )
        assert annotations() == ("1209600", "10")
        ten.set_policy(TASK, max_iterations=6, ttl="1h")
        assert annotations() == ("3600", "6")
        ten.set_policy(TASK, clear_ttl=True)
        assert annotations() == (None, "6")
        assert ttl_of(head(store)) is None
        assert find_problems(head(store)) == []


def _race(spec: StoreSpec, max_iterations: int, count: int) -> int:
    """In a child process: increment until refused, ``count`` times at most; the successes."""
    done = 0
    with spec.open() as store, StateManager(store, max_iterations=max_iterations) as manager:
        for _ in range(count):
            try:
                manager.increment_iteration(TASK)
                done += 1
            except MaxIterationsReached:
                pass
    return done


def _in_processes(spec: StoreSpec, limits: list[int], count: int) -> list[int]:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(len(limits)) as pool:
        return pool.starmap(_race, [(spec, limit, count) for limit in limits])


class TestProcesses:
    def test_processes_configured_differently_obey_the_stored_limit(
        self, store_spec: StoreSpec, store: Store
    ) -> None:
        """Four processes (limits 3, 10, 3, 10) race on a task that stores 5: exactly 5 succeed."""
        StateManager(store).get_or_create_state(TASK, max_iterations=5)
        results = _in_processes(store_spec, [3, 10, 3, 10], 4)
        assert sum(results) == 5
        assert StateManager(store).get_state(TASK).iteration == 5

    def test_racing_to_create_one_limit_wins_and_binds_all(
        self, store_spec: StoreSpec, store: Store
    ) -> None:
        """On a new task, whichever process creates it stores its limit, and all obey it."""
        results = _in_processes(store_spec, [3, 10, 3, 10], 4)
        state = StateManager(store).get_state(TASK)
        assert state.policy.max_iterations in (3, 10)
        assert sum(results) == state.iteration == state.policy.max_iterations
