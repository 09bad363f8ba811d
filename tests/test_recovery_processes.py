"""Recovery against real processes, on both backends: racing writers, and writers killed mid-write.

- A repair is a compare-and-swap: writers in other processes increment the
  task while it is damaged and repaired again and again; every increment they
  were told succeeded is in the final state.
- A writer SIGKILLed at a random moment, during a segment move or during a
  snapshot and repair, leaves a state that ``validate_state`` reports on,
  ``recover_state`` repairs, and ``get_state`` reads. The kill lands after a
  random number of operations the child reported (no sleeps).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import queue
import random
from typing import Any

import pytest

from remstate import StateManager
from remstate.errors import Conflict
from remstate.schema import LABEL_ROLE, ROLE_SEGMENT, object_name, task_selector
from remstate.store import Store, StoredObject
from tests.backends import StoreSpec
from tests.helpers import entry

TASK = "race"
NAME = object_name(TASK)
WRITERS = 3
INCREMENTS = 25


def _increment(spec: StoreSpec, worker: int, count: int) -> list[str]:
    """In a child: ``count`` increments, each with its own key; the keys acknowledged."""
    done = []
    with spec.open() as store, StateManager(store, max_iterations=100_000) as manager:
        for i in range(count):
            key = f"w{worker}-{i:03d}"
            manager.increment_iteration(TASK, op_id=key)
            done.append(key)
    return done


def damage(store: Store) -> StoredObject:
    """Drop two keys a reader tolerates (a writer goes on writing over them): a CAS, retried."""
    while True:
        head = store.get(NAME)
        data = {
            k: v for k, v in (head.data or {}).items() if k not in {"metadata", "error_messages"}
        }
        try:
            return store.replace(dataclasses.replace(head, data=data))
        except Conflict:
            continue


class ConflictCounting:
    """The store, counting the Conflicts its replace raised (the repair's lost races)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.conflicts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def replace(self, obj: StoredObject) -> StoredObject:
        try:
            return self.inner.replace(obj)
        except Conflict:
            self.conflicts += 1
            raise


def test_a_repair_racing_writers_loses_none_of_their_writes(
    store_spec: StoreSpec, store: Store
) -> None:
    """3 processes x 25 increments while the task is damaged and repaired in a loop: all 75 stay."""
    counting = ConflictCounting(store)
    manager = StateManager(counting, max_iterations=100_000)  # type: ignore[arg-type]
    manager.get_or_create_state(TASK)
    repairs = 0
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(WRITERS) as pool:
        pending = pool.starmap_async(
            _increment, [(store_spec, w, INCREMENTS) for w in range(WRITERS)]
        )
        while not pending.ready():
            damage(store)
            if manager.recover_state(TASK).written:
                repairs += 1
        acknowledged = [key for keys in pending.get(timeout=300) for key in keys]

    manager.recover_state(TASK)
    state = StateManager(store).get_state(TASK)
    assert state.iteration == WRITERS * INCREMENTS
    records = StateManager(store).get_iteration_history(TASK, limit=1000).records
    assert sorted(r.extra["op"] for r in records) == sorted(acknowledged)
    assert manager.validate_state(TASK).ok
    assert repairs > 0
    # How often a repair lost the race and read, validated and repaired again.
    print(f"repairs written: {repairs}; repairs that lost a race: {counting.conflicts}")


# -- killed mid-write ------------------------------------------------------------------


class Reporting:
    """The store, reporting each object it created (a segment, a snapshot) to the parent.

    The parent's kill then lands between that create and the head write after it.
    """

    def __init__(self, inner: Store, progress: Any) -> None:
        self.inner = inner
        self.progress = progress

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def create(self, obj: StoredObject) -> StoredObject:
        created = self.inner.create(obj)
        self.progress.put(created.name)
        return created


def _append_forever(spec: StoreSpec, progress: Any) -> None:
    """In a child: append batches whose writes move history to segments; report each."""
    with spec.open() as inner, StateManager(Reporting(inner, progress)) as manager:  # type: ignore[arg-type]
        n = 0
        while True:
            # New ids each round (a ULID each): every batch adds history.
            batch = [entry(n + i, description="x" * 200, id=None) for i in range(60)]
            manager.append_feedback_many(TASK, batch)
            n += len(batch)
            progress.put(n)


def _repair_forever(spec: StoreSpec, progress: Any) -> None:
    """In a child: damage the head and repair it (a snapshot, then the write), again and again."""
    with (
        spec.open() as store,
        StateManager(Reporting(store, progress), snapshots_kept=2) as manager,  # type: ignore[arg-type]
    ):
        n = 0
        while True:
            damage(store)
            n += 1
            progress.put(n)  # a kill now lands in the snapshot and repair that follow
            manager.recover_state(TASK)
            n += 1
            progress.put(n)


def kill_after(spec: StoreSpec, target: Any, operations: int) -> None:
    """Run ``target`` in a child and SIGKILL it after it reported ``operations`` operations."""
    ctx = multiprocessing.get_context("spawn")
    progress = ctx.Queue()
    child = ctx.Process(target=target, args=(spec, progress), daemon=True)
    child.start()
    try:
        for _ in range(operations):  # operations done, and objects created
            try:
                progress.get(timeout=120)
            except queue.Empty:
                pytest.fail(f"the child stopped reporting (exit code {child.exitcode})")
    finally:
        child.kill()
        child.join()
        progress.close()


def check_readable(store: Store) -> tuple[int, int]:
    """validate_state never raises, recover_state repairs, get_state and paging read."""
    manager = StateManager(store)
    report = manager.validate_state(TASK)
    recovered = manager.recover_state(TASK)
    assert recovered.remaining == ()
    state = StateManager(store).get_state(TASK)
    page = StateManager(store).get_feedback_history(TASK, limit=10_000)
    assert len(page.entries) == state.feedback_total
    assert manager.validate_state(TASK).ok
    return len(report.problems), len(recovered.lost)


@pytest.mark.parametrize(
    "target", [_append_forever, _repair_forever], ids=["segment-move", "snapshot"]
)
def test_a_writer_killed_mid_write_leaves_a_readable_state(
    store_spec: StoreSpec, store: Store, target: Any
) -> None:
    """Twelve rounds, each killed at a random moment; after each, the state reads and repairs."""
    rng = random.Random(8)
    StateManager(store).get_or_create_state(TASK)
    seen = 0
    for _ in range(12):
        kill_after(store_spec, target, rng.randint(1, 8))
        problems, lost = check_readable(store)
        assert lost == 0
        seen += problems
    state = StateManager(store).get_state(TASK)
    listed = store.list(label_selector=task_selector(TASK), metadata_only=True).items
    orphans = {o.name for o in listed if o.labels.get(LABEL_ROLE) == ROLE_SEGMENT} - {
        s.name for s in state.segments
    }
    if target is _append_forever:
        assert state.segments  # history did move
    # Figures for the report: problems the kills left, and segments they orphaned.
    print(f"{target.__name__}: problems after kills: {seen}; orphan segments: {len(orphans)}")
