"""The manager's Prometheus metrics on the write path, on both backends.

Read from the registry with ``get_sample_value``, as a scrape would see them,
and checked against what the store itself saw: the conflicts it refused and
the bytes of what it stored.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from remstate import StateManager
from remstate.errors import AlreadyExists, Conflict, InvalidInput
from remstate.metrics import Metrics
from remstate.objects import StoredObject
from remstate.retry import RetryPolicy
from remstate.schema import object_name, value_bytes
from remstate.store import Store
from tests.backends import StoreSpec


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A sample's value; 0 for one never observed (as a scraper would read its absence)."""
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


class CountingStore:
    """A real store, counting the compare-and-swap writes it refused and the ones it took."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.lost = 0  # Conflict on replace, AlreadyExists on create
        self.written: list[int] = []  # value bytes of each head written
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def create(self, obj: StoredObject) -> StoredObject:
        return self._counted(self._store.create, obj)

    def replace(self, obj: StoredObject) -> StoredObject:
        return self._counted(self._store.replace, obj)

    def _counted(self, write: Any, obj: StoredObject) -> StoredObject:
        try:
            written: StoredObject = write(obj)
        except (Conflict, AlreadyExists):
            with self._lock:
                self.lost += 1
            raise
        with self._lock:
            self.written.append(value_bytes(written.data))
        return written


class TestRegistry:
    def test_each_manager_counts_in_a_registry_of_its_own(self, store: Store) -> None:
        """Two managers built without a registry do not collide, and do not share counts."""
        one, two = StateManager(store), StateManager(store)
        assert one.metrics.registry is not two.metrics.registry
        one.increment_iteration("42")
        assert sample(one.metrics.registry, "remstate_iterations_count") == 1
        assert sample(two.metrics.registry, "remstate_iterations_count") == 0

    def test_counts_in_the_registry_given(self, store: Store) -> None:
        """``registry=`` registers the collectors there, where a scrape finds them."""
        registry = CollectorRegistry()
        manager = StateManager(store, registry=registry)
        manager.increment_iteration("42")
        assert manager.metrics.registry is registry
        assert sample(registry, "remstate_iterations_count") == 1

    def test_managers_sharing_metrics_count_together(self, store: Store) -> None:
        """Two managers given one ``Metrics`` add up in its registry."""
        shared = Metrics()
        StateManager(store, metrics=shared).increment_iteration("a")
        StateManager(store, metrics=shared).increment_iteration("b")
        assert sample(shared.registry, "remstate_iterations_count") == 2

    def test_a_registry_taken_twice_is_refused_and_left_as_it_was(self) -> None:
        """A second ``Metrics`` in one registry is InvalidInput, and registers nothing."""
        registry = CollectorRegistry()
        first = Metrics(registry)
        before = sorted(m.name for m in registry.collect())
        with pytest.raises(InvalidInput, match="share one Metrics"):
            Metrics(registry)
        assert sorted(m.name for m in registry.collect()) == before
        first.conflicts_retried.inc()
        assert sample(registry, "remstate_conflicts_retried_total") == 1

    @pytest.mark.parametrize(
        "options",
        [
            {"metrics": "yes"},
            {"metrics": CollectorRegistry()},
            {"registry": Metrics()},
            {"registry": "default"},
            {"metrics": Metrics(), "registry": CollectorRegistry()},
        ],
        ids=["metrics-str", "metrics-registry", "registry-metrics", "registry-str", "both"],
    )
    def test_bad_metrics_arguments_are_invalid_input(
        self, store: Store, options: dict[str, Any], tmp_path: Path
    ) -> None:
        """A bad ``metrics=`` or ``registry=`` is InvalidInput; ``from_url`` creates no file."""
        with pytest.raises(InvalidInput):
            StateManager(store, **options)
        path = tmp_path / "never.db"
        with pytest.raises(InvalidInput):
            StateManager.from_url(f"sqlite:///{path}", **options)
        assert not path.exists()


class TestWritePath:
    def test_iterations_observe_the_counter_after_each_increment(self, store: Store) -> None:
        """N increments: N observations summing to 1 + ... + N."""
        manager = StateManager(store)
        for _ in range(5):
            manager.increment_iteration("42")
        registry = manager.metrics.registry
        assert sample(registry, "remstate_iterations_count") == 5
        assert sample(registry, "remstate_iterations_sum") == 15
        assert sample(registry, "remstate_iterations_bucket", le="5.0") == 5
        assert sample(registry, "remstate_iterations_bucket", le="3.0") == 3

    def test_a_replayed_increment_is_not_observed_again(self, store: Store) -> None:
        """An increment repeated with its key writes nothing, and counts once."""
        manager = StateManager(store)
        assert manager.increment_iteration("42", op_id="step-1") == 1
        assert manager.increment_iteration("42", op_id="step-1") == 1
        assert sample(manager.metrics.registry, "remstate_iterations_count") == 1

    def test_state_size_observes_the_bytes_stored_at_each_write(self, store: Store) -> None:
        """Each write adds the stored head's data bytes, exactly, to the histogram."""
        manager = StateManager(store)
        registry = manager.metrics.registry
        for i in range(4):
            before = sample(registry, "remstate_state_size_bytes_sum")
            manager.update_metadata("42", {f"k{i}": "x" * 100 * i})
            stored = store.get(object_name("42"))
            assert sample(registry, "remstate_state_size_bytes_sum") - before == value_bytes(
                stored.data
            )
        assert sample(registry, "remstate_state_size_bytes_count") == 4

    def test_a_lost_compare_and_swap_counts_one_retry(self, store: Store) -> None:
        """A writer whose remembered object went stale retries once, and counts it."""
        one, two = StateManager(store), StateManager(store)
        one.increment_iteration("42")  # ``one`` remembers this version
        two.increment_iteration("42")  # ... which is now stale
        assert one.increment_iteration("42") == 3
        assert sample(one.metrics.registry, "remstate_conflicts_retried_total") == 1
        assert sample(two.metrics.registry, "remstate_conflicts_retried_total") == 0

    def test_contended_increments_match_what_the_store_saw(self, store_spec: StoreSpec) -> None:
        """2 threads x 15 increments on one task: the samples match the store's own counts."""
        per_thread = 15
        shared = Metrics()
        counting: list[CountingStore] = []
        errors: list[BaseException] = []
        start = threading.Barrier(2)

        def work(store: Store) -> None:
            counted = CountingStore(store)
            counting.append(counted)
            manager = StateManager(
                counted,  # type: ignore[arg-type]
                metrics=shared,
                max_iterations=1000,
                retry=RetryPolicy(max_attempts=100, deadline=60),
            )
            start.wait()
            try:
                for _ in range(per_thread):
                    manager.increment_iteration("shared")
            except BaseException as e:
                errors.append(e)

        with store_spec.open() as a, store_spec.open() as b:
            threads = [threading.Thread(target=work, args=(s,)) for s in (a, b)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert not errors
        registry = shared.registry
        total = 2 * per_thread
        assert sample(registry, "remstate_iterations_count") == total
        assert sample(registry, "remstate_iterations_sum") == total * (total + 1) / 2
        lost = sum(c.lost for c in counting)
        written = [n for c in counting for n in c.written]
        assert sample(registry, "remstate_conflicts_retried_total") == lost
        assert sample(registry, "remstate_state_size_bytes_count") == len(written)
        assert sample(registry, "remstate_state_size_bytes_sum") == sum(written)
