"""Fairness under sustained contention: no writer starves, and none fails.

Writer processes (real ones, each with its own connection and manager)
increment one task in a tight loop. Before remstate took turns, the writer
that had just won kept the freshest object cached and wrote again at once
with one request, while a loser needed a read and then a write: the winner
kept winning, and losers ran out of attempts (issue 6, defect 11: 6 writers
for 60 s gave [1061, 1, 1, 3262, 253, 738] successes and 5 failures).

The claims are about counts, not speed: no failed operation, Jain's fairness
index over the writers' successes at least 0.8, and every acknowledged
increment in the counter exactly once. The figures are printed (``-s``).
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

from remstate import RemstateError, StateManager
from remstate.errors import Conflict
from remstate.retry import RetryPolicy
from remstate.schema import object_name
from remstate.store import Store
from remstate.turns import ANNOTATION_TURN, FREE_WRITES
from tests.backends import CountingStore, LosesResponses, StoreSpec

WRITERS = 6
#: The issue's goal is 60 s against the real API server. Writers take turns
#: about once a second each, so the count of turns, not of writes, sets how
#: even the shares can be: the embedded store needs its 30 s too.
SECONDS = {"kubernetes": 60.0, "embedded": 30.0}
#: A guard on the history's growth: each increment adds a record to the head.
MAX_TOTAL = 12_000
TASK = "hot"


def _writer(spec: StoreSpec, seconds: float, start: Any, total: Any, results: Any) -> None:
    """In a child process: increment until the time is up; report numbers and failures."""
    numbers: list[int] = []
    failures: list[str] = []
    with spec.open() as store, StateManager(store, max_iterations=1_000_000) as manager:
        manager.get_current_iteration(TASK)  # warm: the connection and the last-seen object
        start.wait()
        end = time.monotonic() + seconds
        while time.monotonic() < end and total.value < MAX_TOTAL:
            try:
                numbers.append(manager.increment_iteration(TASK))
            except RemstateError as e:
                failures.append(f"{type(e).__name__}: {str(e)[:200]}")
            with total.get_lock():
                total.value += 1
    results.put((numbers, failures))


def jain(counts: list[int]) -> float:
    """Jain's fairness index: 1 when all are equal, 1/n when one writer has everything."""
    return sum(counts) ** 2 / (len(counts) * sum(c * c for c in counts)) if any(counts) else 0.0


def contend(spec: StoreSpec, seconds: float) -> list[tuple[list[int], list[str]]]:
    """Run the writers; each one's (increment numbers, failures)."""
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(WRITERS + 1)
    total = ctx.Value("q", 0)
    results = ctx.Queue()
    processes = [
        ctx.Process(target=_writer, args=(spec, seconds, start, total, results), daemon=True)
        for _ in range(WRITERS)
    ]
    for p in processes:
        p.start()
    try:
        start.wait(timeout=180)
        # An operation still in flight at the end may take the retry deadline (60 s).
        reports = [results.get(timeout=seconds + 180) for _ in processes]
    finally:
        for p in processes:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
    return reports


class TestSustainedContention:
    def test_six_writers_share_one_task_fairly_and_none_fails(
        self, store_spec: StoreSpec, store: Store
    ) -> None:
        """6 processes in a tight increment loop: no failure, Jain >= 0.8, each number once."""
        StateManager(store, max_iterations=1_000_000).get_or_create_state(TASK)
        reports = contend(store_spec, SECONDS[store_spec.kind])

        counts = [len(numbers) for numbers, _ in reports]
        failures = [f for _, failed in reports for f in failed]
        index = jain(counts)
        print(
            f"\n{store_spec.kind}: {WRITERS} writers, {SECONDS[store_spec.kind]:.0f} s: "
            f"successes {counts} (total {sum(counts)}), Jain {index:.3f}, "
            f"failed {len(failures)} {failures[:3]}"
        )
        numbers = sorted(n for numbers, _ in reports for n in numbers)
        final = StateManager(store).get_current_iteration(TASK)
        assert numbers == list(range(1, len(numbers) + 1))  # each number returned once
        assert final == len(numbers)  # nothing lost, nothing doubled
        assert failures == []
        assert index >= 0.8, f"successes per writer {counts}"


class TestTurns:
    """The turn annotation: taken under sustained contention, dropped by the write, expiring."""

    def test_after_two_lost_races_the_write_takes_the_turn_and_drops_it(self, store: Store) -> None:
        """Two Conflicts, then a patch takes the turn; the write that follows removes it."""
        StateManager(store).increment_iteration("t")
        # Lost races: the writes raise Conflict and nothing of ours lands.
        losing = LosesResponses(
            store, 2, methods=frozenset({"replace"}), error=Conflict, commit=False
        )
        manager = StateManager(losing)
        assert manager.increment_iteration("t") == 2
        assert losing.calls.count("annotate") == 1
        assert losing.calls[-2:] == ["annotate", "replace"]
        head = store.get(object_name("t"))
        assert ANNOTATION_TURN not in head.annotations
        assert StateManager(store).get_current_iteration("t") == 2

    def test_a_turn_whose_holder_is_gone_expires(self, store: Store) -> None:
        """A turn left by a writer that died holds others back for a moment only."""
        StateManager(store).increment_iteration("t")
        store.annotate(object_name("t"), {ANNOTATION_TURN: "a-writer-that-died"})
        manager = StateManager(store)
        assert manager.increment_iteration("t") == 2
        assert ANNOTATION_TURN not in store.get(object_name("t")).annotations

    def test_after_a_contended_turn_a_writer_steps_aside_after_its_free_writes(
        self, store: Store
    ) -> None:
        """With another writer seen since its turn, the holder queues again after FREE_WRITES."""
        StateManager(store, max_iterations=1000).increment_iteration("t")
        losing = LosesResponses(
            store, 2, methods=frozenset({"replace"}), error=Conflict, commit=False
        )
        manager = StateManager(losing, max_iterations=1000)
        manager.increment_iteration("t")  # two lost races, then a turn
        StateManager(store).increment_iteration("t")  # another writer: contention goes on
        losing.calls.clear()
        for _ in range(FREE_WRITES):
            manager.increment_iteration("t")
        # The first write loses to the other writer's, reads and writes again.
        assert losing.calls == ["replace", "get", "replace"] + ["replace"] * (FREE_WRITES - 1)
        losing.calls.clear()
        manager.increment_iteration("t")
        assert losing.calls == ["annotate", "replace"]
        # Uncontended since: the turn it took then gives it no free-write count again.
        losing.calls.clear()
        for _ in range(FREE_WRITES + 5):
            manager.increment_iteration("t")
        assert losing.calls == ["replace"] * (FREE_WRITES + 5)
        assert StateManager(store).get_current_iteration("t") == 2 * FREE_WRITES + 9

    def test_a_writer_left_alone_after_a_contended_turn_never_steps_aside(
        self, store: Store
    ) -> None:
        """Nobody else writing since its turn: one request per write, past its free writes."""
        StateManager(store, max_iterations=1000).increment_iteration("t")
        losing = LosesResponses(
            store, 2, methods=frozenset({"replace"}), error=Conflict, commit=False
        )
        manager = StateManager(losing, max_iterations=1000)
        manager.increment_iteration("t")  # two lost races, then a turn
        losing.calls.clear()
        for _ in range(FREE_WRITES + 5):
            manager.increment_iteration("t")
        assert losing.calls == ["replace"] * (FREE_WRITES + 5)
        assert StateManager(store).get_current_iteration("t") == FREE_WRITES + 7

    def test_free_writes_are_kept_for_as_many_tasks_as_objects_are(self, store: Store) -> None:
        """A manager counts free writes for at most ``cache_size`` tasks, the latest ones."""
        losing = LosesResponses(store, 0, methods=frozenset({"replace"}), error=Conflict)
        manager = StateManager(losing, max_iterations=1000, cache_size=1)
        for task in ("a", "b"):
            StateManager(store, max_iterations=1000).increment_iteration(task)
            losing.losses, losing.commit = 2, False
            manager.increment_iteration(task)  # two lost races, then a turn
        # A lost race on "a" again: a writer that still counted its free writes
        # there would step aside after them; "b"'s turn has pushed "a" out.
        losing.losses = 1
        losing.calls.clear()
        for _ in range(FREE_WRITES + 2):
            manager.increment_iteration("a")
        # A read (evicted from the cache too), the lost race (not sent), a re-read.
        assert losing.calls[:3] == ["get", "get", "replace"]
        assert "annotate" not in losing.calls
        assert StateManager(store).get_current_iteration("a") == FREE_WRITES + 4

    def test_one_attempt_never_waits_for_a_turn(self, store: Store) -> None:
        """RetryPolicy.none() writes over a stale turn at once: one read, one write."""
        StateManager(store).increment_iteration("t")
        store.annotate(object_name("t"), {ANNOTATION_TURN: "a-writer-that-died"})
        counting = CountingStore(store)
        manager = StateManager(counting, retry=RetryPolicy.none())  # type: ignore[arg-type]
        assert manager.increment_iteration("t") == 2
        assert counting.calls == ["get", "replace"]
        assert ANNOTATION_TURN not in store.get(object_name("t")).annotations
