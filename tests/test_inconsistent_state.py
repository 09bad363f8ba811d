"""A read refuses state that breaks an invariant, so no write spreads it (both backends).

The inconsistent objects are written through the raw store, as a foreign
tool or a hand edit would: a counter that disagrees with its records,
duplicate feedback IDs, another task's ID. Reading them raises
``CorruptState`` (CLI exit 8) naming the problem, and no operation writes
on top of them: the resourceVersion stays as it was.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest

from remstate import CorruptState, FeedbackEntry, StateManager
from remstate.cli import Exit, main
from remstate.schema import IterationRecord, TaskState, object_name, state_object
from remstate.store import Store, StoredObject
from tests.backends import StoreSpec
from tests.helpers import T0

TASK = "42"


def feedback(entry_id: str) -> FeedbackEntry:
    return FeedbackEntry.new(
        author="a", severity="low", issue_type="bug", description=entry_id, id=entry_id
    )


def with_data(store: Store, **changes: str) -> StoredObject:
    """Replace some data keys of the task's object through the raw store."""
    obj = store.get(object_name(TASK))
    assert obj.data is not None
    return store.replace(dataclasses.replace(obj, data={**obj.data, **changes}))


def counter_behind(store: Store) -> StoredObject:
    """The issue's case: iteration 0 with 2 records in the history."""
    return with_data(store, iteration="0")


def counter_ahead(store: Store) -> StoredObject:
    """Iteration 5 against 2 records."""
    return with_data(store, iteration="5")


def duplicate_ids(store: Store) -> StoredObject:
    """Two feedback entries with one ID."""
    obj = store.get(object_name(TASK))
    assert obj.data is not None
    entries = json.loads(obj.data["feedback_history"])
    return with_data(store, feedback_history=json.dumps([*entries, entries[0]]))


def other_task_id(store: Store) -> StoredObject:
    """``data.task_id`` names another task; the annotation still names this one."""
    return with_data(store, task_id="43")


def other_task_everywhere(store: Store) -> StoredObject:
    """``data.task_id`` and the task-id annotation both name another task."""
    obj = store.get(object_name(TASK))
    assert obj.data is not None
    return store.replace(
        dataclasses.replace(
            obj,
            data={**obj.data, "task_id": "43"},
            annotations={**obj.annotations, "remstate.io/task-id": "43"},
        )
    )


def hand_made(store: Store) -> StoredObject:
    """A head created from scratch by another tool: iteration 0, two records."""
    store.delete(object_name(TASK))
    state = TaskState(
        TASK,
        0,
        "pending",
        T0,
        iteration_history=(IterationRecord(1, T0), IterationRecord(2, T0)),
    )
    return store.create(state_object(state))


#: How each inconsistency is made, and the field the error names.
CASES = [
    pytest.param(counter_behind, "iteration", id="iteration-0-with-2-records"),
    pytest.param(counter_ahead, "iteration", id="iteration-5-with-2-records"),
    pytest.param(duplicate_ids, "feedback_history", id="duplicate-feedback-id"),
    pytest.param(other_task_id, "task_id", id="data-task-id-of-another-task"),
    pytest.param(other_task_everywhere, "task_id", id="task-id-and-annotation-of-another"),
    pytest.param(hand_made, "iteration", id="hand-made-object"),
]

#: Every operation that reads the state first; none may write.
OPERATIONS: list[Callable[[StateManager], Any]] = [
    lambda m: m.get_state(TASK),
    lambda m: m.get_current_iteration(TASK),
    lambda m: m.get_feedback_history(TASK),
    lambda m: m.get_or_create_state(TASK),
    lambda m: m.increment_iteration(TASK),
    lambda m: m.append_feedback(TASK, feedback("new")),
    lambda m: m.append_feedback(TASK, feedback("f1")),  # an id already there: a no-op
    lambda m: m.resolve_feedback(TASK, "f1"),
    lambda m: m.set_status(TASK, "completed"),
    lambda m: m.record_error(TASK, "boom"),
    lambda m: m.update_metadata(TASK, {"k": "v"}),
    lambda m: m.update_state(TASK, lambda s: dataclasses.replace(s, status="failed")),
]


def consistent_task(store: Store) -> StateManager:
    """A task with 2 iterations and 2 feedback entries, written by a manager."""
    manager = StateManager(store, max_iterations=3)
    manager.increment_iteration(TASK)
    manager.increment_iteration(TASK)
    manager.append_feedback(TASK, feedback("f1"))
    manager.append_feedback(TASK, feedback("f2"))
    return manager


class TestReadsRefuseInconsistentState:
    @pytest.mark.parametrize(("make", "field"), CASES)
    def test_every_operation_raises_corrupt_state_and_writes_nothing(
        self, store: Store, make: Callable[[Store], StoredObject], field: str
    ) -> None:
        """Each operation raises CorruptState naming the field; the resourceVersion stays."""
        writer = consistent_task(store)  # its cache holds the consistent version
        bad = make(store)
        for manager in (writer, StateManager(store, max_iterations=3)):
            for operation in OPERATIONS:
                with pytest.raises(CorruptState) as caught:
                    operation(manager)
                assert caught.value.field == field
                assert str(caught.value).startswith(f"{bad.name} is inconsistent")
        after = store.get(object_name(TASK))
        assert (after.resource_version, after.data) == (bad.resource_version, bad.data)

    def test_increments_never_pass_the_maximum(self, store: Store) -> None:
        """The issue's case: four increments with a maximum of 3 no longer give [1, 2, 1, 2, 3]."""
        consistent_task(store)
        bad = counter_behind(store)
        manager = StateManager(store, max_iterations=3)
        for _ in range(4):
            with pytest.raises(CorruptState, match="iteration is 0 but iteration_history has 2"):
                manager.increment_iteration(TASK)
        assert store.get(object_name(TASK)).resource_version == bad.resource_version

    def test_another_task_id_is_not_shown_or_copied(self, store: Store) -> None:
        """``get`` does not show the other ID, and no write copies it into labels."""
        consistent_task(store)
        bad = other_task_id(store)
        manager = StateManager(store)
        with pytest.raises(CorruptState, match="'43'"):
            manager.get_state(TASK)
        with pytest.raises(CorruptState):
            manager.set_status(TASK, "completed")
        after = store.get(object_name(TASK))
        assert after.labels == bad.labels
        assert after.annotations["remstate.io/task-id"] == TASK

    def test_deleting_an_inconsistent_state_still_works(self, store: Store) -> None:
        """The way out stays open: delete_state removes it."""
        manager = consistent_task(store)
        counter_behind(store)
        assert manager.delete_state(TASK) is True
        assert manager.get_or_create_state(TASK).iteration == 0


class TestCli:
    @pytest.mark.parametrize(("make", "field"), CASES)
    @pytest.mark.parametrize(
        "args",
        [
            ["get", TASK],
            ["increment", TASK],
            ["feedback", "add", TASK, "x", "--author", "a", "--id", "n0"],
        ],
        ids=["get", "increment", "feedback-add"],
    )
    def test_exits_8_with_one_line_and_writes_nothing(  # noqa: PLR0917 - pytest passes these by name
        self,
        store: Store,
        store_spec: StoreSpec,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        make: Callable[[Store], StoredObject],
        field: str,
        args: list[str],
    ) -> None:
        """``remstate`` exits 8 with one line naming the object and the problem."""
        consistent_task(store)
        bad = make(store)
        capsys.readouterr()
        if store_spec.kind == "embedded":
            url = f"sqlite://{store_spec.path}"
        else:
            monkeypatch.setenv("KUBECONFIG", str(store_spec.kubeconfig))
            url = f"kubernetes://{store_spec.namespace}"
        code = main(["--store", url, *args])
        captured = capsys.readouterr()
        assert code == Exit.CORRUPT == 8
        assert captured.out == ""
        lines = captured.err.splitlines()
        assert len(lines) == 1
        assert lines[0].startswith(f"remstate: {bad.name} is inconsistent, refused: {field}: ")
        assert store.get(object_name(TASK)).resource_version == bad.resource_version
