"""Export and import of whole states (``StateManager.export_state`` / ``import_state``).

On both backends (Kubernetes: the real API server), and across them: a state
whose history fills segments of every kind goes embedded -> Kubernetes ->
embedded and reads back identical.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from remstate import ExportedState, ImportOutcome, InvalidInput, StateManager, StateNotFound
from remstate.schema import (
    KIND_ERRORS,
    KIND_FEEDBACK,
    KIND_ITERATIONS,
    LIFECYCLE_SOFT_DELETED,
    object_name,
    parse_export_line,
)
from remstate.store import Store
from remstate.store.embedded import EmbeddedStore
from remstate.store.kubernetes import KubernetesStore
from remstate.testing.controlplane import ControlPlane
from tests.backends import CountingStore
from tests.helpers import entry

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


class Clock:
    """A clock that ticks one second per reading."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def build_long_history(manager: StateManager, task: str = "Org/Repo#7") -> None:
    """A task whose feedback, iteration records and errors each fill history segments,
    with an entry resolved after it moved to a segment (the head's overlay)."""
    manager.get_or_create_state(task, max_iterations=500, ttl="30d", metadata={"repo": "org/r"})
    manager.append_feedback_many(task, [entry(i, description="d" * 300) for i in range(600)])
    for i in range(90):
        manager.increment_iteration(task, note=f"attempt {i} " + "n" * 200, op_id=f"step-{i}")
    for i in range(80):
        manager.record_error(task, f"failure {i} " + "e" * 400, id=f"err-{i}")
    manager.resolve_feedback(task, entry(3).id)  # in a segment by now
    manager.resolve_feedback(task, entry(599).id)  # still in the head
    manager.set_status(task, "awaiting_review")
    manager.update_metadata(task, {"pr": 5, "labels": ["a", "ü"]})
    state = manager.get_state(task)
    kinds = {s.kind for s in state.segments}
    assert {KIND_FEEDBACK, KIND_ITERATIONS, KIND_ERRORS} <= kinds, kinds
    assert state.archived_resolutions


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def manager(store: Store, clock: Clock) -> StateManager:
    return StateManager(store, clock=clock)


def _embedded(path: Path) -> EmbeddedStore:
    return EmbeddedStore(str(path))


class TestRoundTrip:
    def test_embedded_to_kubernetes_to_embedded(
        self, tmp_path: Path, controlplane: ControlPlane, controlplane_namespace: str
    ) -> None:
        """A long history goes embedded -> Kubernetes -> embedded and reads back identical."""
        source = StateManager(_embedded(tmp_path / "a.db"), clock=Clock())
        build_long_history(source)
        exported = source.export_state("Org/Repo#7")
        line = exported.to_line()
        assert "\n" not in line

        with controlplane.api_client() as api:
            kube = StateManager(
                KubernetesStore(controlplane_namespace, api_client=api),
                clock=Clock(T0 + timedelta(days=30)),  # never used: the import is verbatim
            )
            assert kube.import_state(parse_export_line(line)) is ImportOutcome.CREATED
            through_kubernetes = kube.export_state("Org/Repo#7")
            assert through_kubernetes == exported
            assert kube.get_state("Org/Repo#7").segments  # compacted as any write is

            back = StateManager(_embedded(tmp_path / "b.db"), clock=Clock())
            assert back.import_state(through_kubernetes) is ImportOutcome.CREATED
            assert back.export_state("Org/Repo#7").to_dict() == exported.to_dict()

        # What the library reads, page by page, is the same too.
        for manager in (source, back):
            page = manager.get_feedback_history("Org/Repo#7", limit=10_000)
            assert len(page.entries) == 600
            assert page.entries[3].resolved
            assert page.entries[3].resolved_at is not None
        a, b = source.get_state("Org/Repo#7"), back.get_state("Org/Repo#7")
        assert (a.iteration, a.status, a.last_update, a.policy, a.metadata) == (
            b.iteration,
            b.status,
            b.last_update,
            b.policy,
            b.metadata,
        )
        assert [r.to_dict() for r in source.get_errors("Org/Repo#7", limit=1000).records] == [
            r.to_dict() for r in back.get_errors("Org/Repo#7", limit=1000).records
        ]
        assert [
            r.to_dict() for r in source.get_iteration_history("Org/Repo#7", limit=1000).records
        ] == [r.to_dict() for r in back.get_iteration_history("Org/Repo#7", limit=1000).records]
        # Idempotency keys survive: a retried increment with a known key writes nothing.
        assert back.increment_iteration("Org/Repo#7", op_id="step-4") == 5


class TestImport:
    def test_export_of_a_missing_task(self, manager: StateManager) -> None:
        """No state: StateNotFound."""
        with pytest.raises(StateNotFound):
            manager.export_state("nope")

    def test_idempotent(self, store: Store, clock: Clock) -> None:
        """The same state again is skipped, and nothing is written."""
        counted = CountingStore(store)
        manager = StateManager(counted, clock=clock)  # type: ignore[arg-type]
        manager.increment_iteration("42")
        exported = manager.export_state("42")
        manager.delete_state("42")
        assert manager.import_state(exported) is ImportOutcome.CREATED
        counted.calls.clear()
        assert manager.import_state(exported) is ImportOutcome.SKIPPED
        assert set(counted.calls) <= {"get", "list"}

    def test_a_different_state_is_left_alone(self, manager: StateManager, store: Store) -> None:
        """Without overwrite, a different state is DIFFERS and is not written."""
        manager.increment_iteration("42")
        exported = manager.export_state("42")
        manager.increment_iteration("42")
        before = store.get(object_name("42"))
        assert manager.import_state(exported) is ImportOutcome.DIFFERS
        assert store.get(object_name("42")).resource_version == before.resource_version
        assert manager.get_current_iteration("42") == 2

    def test_overwrite_takes_a_snapshot_first(self, manager: StateManager) -> None:
        """With overwrite, a snapshot of the old state first; it restores the old state."""
        build_long_history(manager, "t")
        old = manager.export_state("t")
        manager.delete_state("u")
        manager.increment_iteration("u", note="other")
        new = dataclasses.replace(
            manager.export_state("u"),
            state=dataclasses.replace(manager.export_state("u").state, task_id="t"),
        )
        assert manager.import_state(new, overwrite=True) is ImportOutcome.OVERWRITTEN
        assert manager.export_state("t").to_dict() == new.to_dict()
        (snapshot,) = manager.list_snapshots("t")
        assert snapshot.reason == "import --overwrite"
        manager.restore_snapshot("t", snapshot.name)
        assert manager.export_state("t").to_dict() == old.to_dict()

    def test_keeps_the_timestamps_and_a_missing_policy(
        self, manager: StateManager, store: Store
    ) -> None:
        """last_update and an empty policy (written before policies) are written as exported."""
        manager.increment_iteration("42")
        exported = manager.export_state("42")
        legacy = dataclasses.replace(
            exported,
            state=dataclasses.replace(
                exported.state,
                policy=dataclasses.replace(exported.state.policy, max_iterations=None),
                last_update=datetime(2020, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
            ),
        )
        manager.delete_state("42")
        assert manager.import_state(legacy) is ImportOutcome.CREATED
        state = manager.get_state("42")
        assert state.last_update == datetime(2020, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
        assert state.policy.max_iterations is None
        assert manager.export_state("42") == legacy

    def test_soft_deleted_stays_soft_deleted(self, manager: StateManager, store: Store) -> None:
        """A soft-deleted state is imported soft-deleted, with its time."""
        manager.increment_iteration("42")
        when = datetime(2026, 11, 20, tzinfo=UTC)
        exported = dataclasses.replace(manager.export_state("42"), soft_deleted_at=when)
        manager.delete_state("42")
        assert manager.import_state(exported) is ImportOutcome.CREATED
        (summary,) = manager.list_states().summaries
        assert (summary.lifecycle, summary.soft_deleted_at) == (LIFECYCLE_SOFT_DELETED, when)
        assert manager.import_state(exported) is ImportOutcome.SKIPPED

    def test_a_write_meanwhile_is_never_overwritten_unseen(
        self, store: Store, clock: Clock
    ) -> None:
        """Another writer creating the task between the compare and the write wins:
        the import decides again and reports DIFFERS; that writer's increment stays."""
        exporter = StateManager(store, clock=clock)
        exporter.append_feedback("42", entry(1))
        exported = exporter.export_state("42")
        exporter.delete_state("42")

        class Racing(CountingStore):
            raced = False

            def __getattr__(self, name: str) -> object:
                attr = super().__getattr__(name)
                if name != "create" or self.raced:
                    return attr

                def create(obj: object) -> object:
                    self.raced = True
                    StateManager(store).increment_iteration("42")  # lands first
                    return attr(obj)  # type: ignore[operator]

                return create

        racing = StateManager(Racing(store), clock=clock)  # type: ignore[arg-type]
        assert racing.import_state(exported) is ImportOutcome.DIFFERS
        assert exporter.get_current_iteration("42") == 1
        assert exporter.get_feedback_history("42").entries == []
        assert racing.import_state(exported, overwrite=True) is ImportOutcome.OVERWRITTEN
        assert exporter.export_state("42") == exported

    def test_not_an_exported_state(self, manager: StateManager) -> None:
        """Anything but an ExportedState, or a bad overwrite: InvalidInput."""
        with pytest.raises(InvalidInput, match="ExportedState"):
            manager.import_state({"task_id": "42"})  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match="overwrite"):
            manager.import_state(
                ExportedState(manager.get_or_create_state("x")),
                overwrite="yes",  # type: ignore[arg-type]
            )
