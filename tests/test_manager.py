"""The StateManager's operations, on both backends (Kubernetes: the real API server)."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from remstate import (
    ErrorRecord,
    FeedbackEntry,
    InvalidInput,
    IterationRecord,
    MaxIterationsReached,
    RemstateError,
    StateManager,
    StateNotFound,
    Status,
    TaskState,
    UnsupportedSchemaVersion,
)
from remstate.errors import Conflict, CorruptState
from remstate.retry import RetryPolicy
from remstate.schema import decode_segment, encode_segment, object_name, plan_compaction
from remstate.store import Store, StoredObject
from tests.backends import CountingStore, LosesResponses, StoreSpec
from tests.helpers import entry


class Clock:
    """A clock that moves only when told: timestamps are exact in assertions."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float = 1) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def manager(store: Store, clock: Clock) -> StateManager:
    return StateManager(store, clock=clock)


class TestStateLifecycle:
    def test_get_missing_raises_state_not_found(self, manager: StateManager) -> None:
        """Reading a task with no state raises StateNotFound naming the task."""
        with pytest.raises(StateNotFound) as caught:
            manager.get_state("nope")
        assert caught.value.task_id == "nope"

    def test_get_or_create_creates_once(self, manager: StateManager, clock: Clock) -> None:
        """get_or_create_state creates iteration 0 the first time and reads it after."""
        first = manager.get_or_create_state("42", metadata={"repo": "x/y"})
        assert (first.task_id, first.iteration, first.status) == ("42", 0, Status.PENDING)
        assert first.last_update == clock.now
        clock.tick()
        again = manager.get_or_create_state("42")
        assert again == first
        assert manager.get_state("42").metadata == {"repo": "x/y"}

    def test_state_is_readable_with_kubectl_keys(self, manager: StateManager, store: Store) -> None:
        """The object is task-{id}-state with the documented plain data keys."""
        manager.increment_iteration("42")
        manager.append_feedback("42", entry(1))
        obj = store.get("task-42-state")
        assert obj.data is not None
        assert set(obj.data) >= {
            "schema_version",
            "task_id",
            "iteration",
            "status",
            "last_update",
            "iteration_history",
            "feedback_history",
            "error_messages",
            "metadata",
        }
        assert obj.data["iteration"] == "1"
        assert obj.data["task_id"] == "42"
        assert json.loads(obj.data["feedback_history"])[0]["id"] == "fb-000001"
        assert obj.data["last_update"].endswith("Z")
        assert obj.labels["app.kubernetes.io/managed-by"] == "remstate"

    def test_any_task_id_maps_to_a_distinct_valid_name(
        self, manager: StateManager, store: Store
    ) -> None:
        """Ids that are not valid object names get distinct valid names and keep their id."""
        ids = [
            "UPPER",
            "upper",
            "a/b",
            "a-b",
            "a_b",
            "with space",
            "ünïcødé-タスク",
            "x" * 300,
            "x" * 301,
            "--",
            "a--b",
            "a-b--x",
            "42",
            " 42",
        ]
        for task_id in ids:
            manager.increment_iteration(task_id)
        names = [o.name for o in store.list().items]
        assert len(names) == len(set(names)) == len(ids)
        dns1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
        assert all(dns1123.match(n) and len(n) <= 253 for n in names)
        for task_id in ids:
            assert manager.get_state(task_id).task_id == task_id

    def test_delete_state(self, manager: StateManager) -> None:
        """delete_state removes the state; a second delete reports there was none."""
        manager.increment_iteration("gone")
        assert manager.delete_state("gone") is True
        with pytest.raises(StateNotFound):
            manager.get_state("gone")
        assert manager.delete_state("gone") is False

    def test_update_state_applies_a_pure_function(
        self, manager: StateManager, store: Store
    ) -> None:
        """update_state writes what fn returns; returning the state unchanged writes nothing."""
        manager.get_or_create_state("u")
        after = manager.update_state(
            "u", lambda s: dataclasses.replace(s, metadata={**s.metadata, "k": 1})
        )
        assert after.metadata == {"k": 1}
        assert manager.get_state("u").metadata == {"k": 1}
        version = store.get(object_name("u")).resource_version
        manager.update_state("u", lambda s: s)
        assert store.get(object_name("u")).resource_version == version

    @pytest.mark.parametrize(
        "change",
        [
            lambda s: dataclasses.replace(s, iteration=99),
            lambda s: dataclasses.replace(s, iteration_history=()),
            lambda s: dataclasses.replace(s, task_id="other"),
            lambda s: dataclasses.replace(
                s, feedback_history=(*s.feedback_history, entry(1), entry(1))
            ),
            lambda s: "not a state",
        ],
    )
    def test_update_state_refuses_what_breaks_the_rules(
        self, manager: StateManager, store: Store, change: Any
    ) -> None:
        """An update that moves the counter, renames the task or doubles an id writes nothing."""
        manager.increment_iteration("u")
        version = store.get(object_name("u")).resource_version
        with pytest.raises(InvalidInput):
            manager.update_state("u", change)
        assert store.get(object_name("u")).resource_version == version

    def test_update_state_refuses_an_error_id_that_is_there(
        self, manager: StateManager, store: Store, clock: Clock
    ) -> None:
        """A second error record with a stored id is refused; readers keep reading the state."""
        manager.record_error("u", "boom", id="E1")
        again = dataclasses.replace(ErrorRecord.new("boom again", clock=clock), extra={"id": "E1"})
        version = store.get(object_name("u")).resource_version
        with pytest.raises(InvalidInput):
            manager.update_state(
                "u", lambda s: dataclasses.replace(s, error_messages=(*s.error_messages, again))
            )
        assert store.get(object_name("u")).resource_version == version
        fresh = StateManager(store, clock=clock)
        assert [e.message for e in fresh.get_state("u").error_messages] == ["boom"]
        assert fresh.increment_iteration("u") == 1

    def test_update_state_of_missing_task_raises(self, manager: StateManager) -> None:
        """update_state does not create a state; it raises StateNotFound."""
        with pytest.raises(StateNotFound):
            manager.update_state("missing", lambda s: s)

    def test_status_errors_and_metadata(self, manager: StateManager, clock: Clock) -> None:
        """set_status, record_error and update_metadata each land in the stored state."""
        manager.set_status("s", "in_progress")
        record = manager.record_error("s", "build failed: exit 2")
        merged = manager.update_metadata("s", {"pr": 17, "branch": "fix/x"})
        merged = manager.update_metadata("s", {"pr": 18}, remove=["branch"])
        state = manager.get_state("s")
        assert state.status == Status.IN_PROGRESS
        assert [e.message for e in state.error_messages] == ["build failed: exit 2"]
        assert record.timestamp == clock.now
        assert state.metadata == merged == {"pr": 18}

    def test_unknown_status_from_a_newer_writer_is_kept(
        self, manager: StateManager, store: Store
    ) -> None:
        """A status value this version does not know is read and written back unchanged."""
        manager.increment_iteration("newer")
        obj = store.get(object_name("newer"))
        assert obj.data is not None
        store.replace(dataclasses.replace(obj, data={**obj.data, "status": "quarantined"}))
        manager.increment_iteration("newer")
        state = manager.get_state("newer")
        assert state.status == "quarantined"
        assert state.iteration == 2


class TestIterations:
    def test_increment_returns_consecutive_numbers_with_records(
        self, manager: StateManager, clock: Clock
    ) -> None:
        """Each increment returns the next number and adds a record stamped by the clock."""
        numbers = []
        for _ in range(3):
            numbers.append(manager.increment_iteration("i", note="try"))
            clock.tick(60)
        state = manager.get_state("i")
        assert numbers == [1, 2, 3]
        assert [r.iteration for r in state.iteration_history] == [1, 2, 3]
        assert [r.started_at for r in state.iteration_history] == [
            clock.now - timedelta(seconds=180 - 60 * k) for k in range(3)
        ]
        assert all(isinstance(r, IterationRecord) for r in state.iteration_history)
        assert manager.get_current_iteration("i") == 3

    def test_at_the_maximum_raises_and_writes_nothing(self, store: Store, clock: Clock) -> None:
        """At max_iterations the increment raises MaxIterationsReached and writes nothing."""
        manager = StateManager(store, max_iterations=3, clock=clock)
        for _ in range(3):
            manager.increment_iteration("m")
        before = store.get(object_name("m"))
        with pytest.raises(MaxIterationsReached) as caught:
            manager.increment_iteration("m")
        assert (caught.value.iteration, caught.value.max_iterations) == (3, 3)
        after = store.get(object_name("m"))
        assert after.resource_version == before.resource_version

    def test_default_maximum_is_ten(self, manager: StateManager) -> None:
        """The default maximum is 10."""
        for _ in range(10):
            manager.increment_iteration("ten")
        with pytest.raises(MaxIterationsReached):
            manager.increment_iteration("ten")
        assert manager.get_current_iteration("ten") == 10

    def test_a_stale_cache_does_not_refuse_an_increment(self, store: Store, clock: Clock) -> None:
        """A manager that remembers a full counter re-reads before refusing."""
        a = StateManager(store, max_iterations=2, clock=clock)
        b = StateManager(store, max_iterations=2, clock=clock)
        a.increment_iteration("c")
        a.increment_iteration("c")
        b.delete_state("c")
        assert a.increment_iteration("c") == 1


class TestFeedback:
    def test_append_and_page(self, manager: StateManager) -> None:
        """Appended entries come back oldest first, page by page, each exactly once."""
        for i in range(25):
            manager.append_feedback("f", entry(i))
        seen: list[str] = []
        cursor = None
        while True:
            page = manager.get_feedback_history("f", limit=10, cursor=cursor)
            assert page.total == 25
            seen.extend(e.id for e in page.entries)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == [f"fb-{i:06d}" for i in range(25)]

    def test_append_is_idempotent_by_id(self, manager: StateManager) -> None:
        """Appending an id again writes nothing and returns the stored entry."""
        first = manager.append_feedback("f", entry(1, description="original"))
        again = manager.append_feedback("f", entry(1, description="a retry with other text"))
        assert again == first
        assert again.description == "original"
        assert manager.get_state("f").feedback_total == 1

    def test_a_ulid_is_generated_when_no_id_is_given(self, manager: StateManager) -> None:
        """Without an id, the entry gets a 26-character ULID."""
        stored = manager.append_feedback(
            "f", author="a", severity="low", issue_type="style", description="d"
        )
        assert len(stored.id) == 26
        assert manager.get_state("f").find_feedback(stored.id) == stored

    def test_resolve_feedback(self, manager: StateManager, clock: Clock) -> None:
        """resolve_feedback marks the entry resolved with the clock's time."""
        manager.append_feedback("f", entry(1))
        clock.tick(5)
        resolved = manager.resolve_feedback("f", "fb-000001")
        assert resolved.resolved is True
        assert resolved.resolved_at == clock.now
        assert manager.get_state("f").feedback_history[0].resolved is True
        with pytest.raises(InvalidInput):
            manager.resolve_feedback("f", "no-such-entry")

    @pytest.mark.parametrize(
        "fields",
        [
            {"severity": "catastrophic"},
            {"issue_type": "vibes"},
            {"author": "x" * 10_000},
            {"description": "x" * 70_000},
            {"id": ""},
        ],
    )
    def test_bad_entries_are_refused_and_nothing_is_written(
        self, manager: StateManager, store: Store, fields: dict[str, Any]
    ) -> None:
        """A bad field raises InvalidInput and writes nothing at all."""
        values: dict[str, Any] = {
            "author": "a",
            "severity": "low",
            "issue_type": "bug",
            "description": "d",
        }
        values.update(fields)
        with pytest.raises(InvalidInput):
            manager.append_feedback("bad", **values)
        assert store.list().items == []

    @pytest.mark.parametrize("limit", [0, -1, 10_001])
    def test_bad_page_limits_are_refused(self, manager: StateManager, limit: int) -> None:
        """A page limit outside 1..10000 raises InvalidInput."""
        manager.append_feedback("f", entry(1))
        with pytest.raises(InvalidInput):
            manager.get_feedback_history("f", limit=limit)

    def test_a_garbled_cursor_is_refused(self, manager: StateManager) -> None:
        """A cursor that we did not make raises InvalidInput."""
        manager.append_feedback("f", entry(1))
        with pytest.raises(InvalidInput):
            manager.get_feedback_history("f", cursor="not-a-cursor!")


class TestBadInput:
    @pytest.mark.parametrize("task_id", ["", "a\nb", "x" * 2000])
    def test_bad_task_ids_are_refused(
        self, manager: StateManager, store: Store, task_id: str
    ) -> None:
        """Empty, control-character and overlong task ids raise InvalidInput; nothing is written."""
        with pytest.raises(InvalidInput):
            manager.increment_iteration(task_id)
        assert store.list().items == []

    def test_unknown_status_is_refused(self, manager: StateManager, store: Store) -> None:
        """set_status with an unknown status raises InvalidInput; nothing is written."""
        with pytest.raises(InvalidInput):
            manager.set_status("t", "exploded")
        assert store.list().items == []

    def test_metadata_must_be_json(self, manager: StateManager, store: Store) -> None:
        """Metadata that is not JSON raises InvalidInput; nothing is written."""
        with pytest.raises(InvalidInput):
            manager.update_metadata("t", {"when": datetime.now(UTC)})
        assert store.list().items == []

    def test_constructor_refuses_nonsense(self, store: Store) -> None:
        """A non-positive max_iterations or a missing store raises InvalidInput."""
        with pytest.raises(InvalidInput):
            StateManager(store, max_iterations=0)
        with pytest.raises(InvalidInput):
            StateManager()

    @pytest.mark.parametrize(
        "call",
        [
            lambda m: m.append_feedback_many("t", None),
            lambda m: m.update_metadata("t", remove=None),
            lambda m: m.update_metadata("t", [1]),
            lambda m: m.get_or_create_state("t", metadata=[1]),
            lambda m: m.update_state("t", None),
            lambda m: m.get_feedback_history("t", cursor="W1s" * 10_000),
            lambda m: StateManager.from_url(123),
            lambda m: RetryPolicy(max_attempts="3"),
        ],
    )
    def test_arguments_of_the_wrong_type_are_invalid_input(
        self, manager: StateManager, store: Store, call: Any
    ) -> None:
        """Arguments of the wrong type raise InvalidInput, never TypeError; nothing is written."""
        manager.get_or_create_state("t")
        version = store.get(object_name("t")).resource_version
        with pytest.raises(InvalidInput):
            call(manager)
        assert store.get(object_name("t")).resource_version == version

    def test_from_url_refuses_unknown_schemes(self) -> None:
        """from_url with an unknown scheme raises InvalidInput."""
        with pytest.raises(InvalidInput):
            StateManager.from_url("redis://localhost")


class TestCorruptState:
    def _corrupt(self, manager: StateManager, store: Store, **data: str) -> None:
        manager.increment_iteration("c")
        obj = store.get(object_name("c"))
        assert obj.data is not None
        store.replace(dataclasses.replace(obj, data={**obj.data, **data}))

    @pytest.mark.parametrize(
        "data",
        [
            {"feedback_history": "[{not json"},
            {"iteration_history": "gzip+base64:!!!"},
            {"metadata": "zstd+base64:AAAA"},
            {"iteration": "many"},
        ],
    )
    def test_corrupt_fields_raise_a_typed_error(
        self, store: Store, clock: Clock, data: dict[str, str]
    ) -> None:
        """A malformed field raises CorruptState naming the field, never anything else."""
        writer = StateManager(store, clock=clock)
        self._corrupt(writer, store, **data)
        reader = StateManager(store, clock=clock)
        with pytest.raises(CorruptState) as caught:
            reader.get_state("c")
        assert caught.value.field in data

    def test_a_newer_schema_version_is_a_clear_error(
        self, manager: StateManager, store: Store
    ) -> None:
        """A state written by a newer schema raises UnsupportedSchemaVersion; we do not guess."""
        self._corrupt(manager, store, schema_version="99")
        with pytest.raises(UnsupportedSchemaVersion) as caught:
            StateManager(store).get_state("c")
        assert caught.value.found == 99


class TestRetries:
    def test_a_lost_response_is_retried_without_a_duplicate(
        self, store: Store, clock: Clock
    ) -> None:
        """A write committed whose response was lost is retried; the entry is there once."""
        lossy = LosesResponses(store, losses=1)
        manager = StateManager(lossy, clock=clock)  # type: ignore[arg-type]
        manager.append_feedback("r", entry(0))
        lossy.losses = 1
        stored = manager.append_feedback("r", entry(1))
        assert stored.id == "fb-000001"
        assert [e.id for e in manager.get_state("r").feedback_history] == [
            "fb-000000",
            "fb-000001",
        ]
        assert lossy.calls.count("replace") == 1  # the commit; the retry saw it there

    def test_a_lost_increment_response_does_not_count_twice(
        self, store: Store, clock: Clock
    ) -> None:
        """An increment whose response was lost returns its number and counts once."""
        lossy = LosesResponses(store, losses=0)
        manager = StateManager(lossy, clock=clock)  # type: ignore[arg-type]
        assert manager.increment_iteration("r") == 1
        lossy.losses = 1
        assert manager.increment_iteration("r") == 2
        state = manager.get_state("r")
        assert state.iteration == 2
        assert len(state.iteration_history) == 2

    def test_a_lost_error_record_response_does_not_duplicate(
        self, store: Store, clock: Clock
    ) -> None:
        """record_error after a lost response leaves exactly one record."""
        lossy = LosesResponses(store, losses=0)
        manager = StateManager(lossy, clock=clock)  # type: ignore[arg-type]
        manager.set_status("r", "in_progress")
        lossy.losses = 1
        manager.record_error("r", "boom")
        assert [e.message for e in manager.get_state("r").error_messages] == ["boom"]


class TestRequests:
    def test_an_uncontended_write_is_one_store_call(self, store: Store, clock: Clock) -> None:
        """After the first read, each uncontended increment and append is one call."""
        counting = CountingStore(store)
        manager = StateManager(counting, clock=clock, max_iterations=100)  # type: ignore[arg-type]
        manager.increment_iteration("q")  # get (not found) + create
        counting.calls.clear()
        for i in range(5):
            manager.increment_iteration("q")
            manager.append_feedback("q", entry(i))
        assert counting.calls == ["replace"] * 10

    def test_get_or_create_reads_once(self, store: Store, clock: Clock) -> None:
        """get_or_create_state is one read (and one create when the task is new)."""
        counting = CountingStore(store)
        StateManager(counting, clock=clock).get_or_create_state("g")  # type: ignore[arg-type]
        assert counting.calls == ["get", "create"]
        counting.calls.clear()
        StateManager(counting, clock=clock).get_or_create_state("g")  # type: ignore[arg-type]
        assert counting.calls == ["get"]


class TestRestart:
    def test_a_new_process_reads_exactly_what_was_written(
        self, store_spec: StoreSpec, store: Store, clock: Clock
    ) -> None:
        """A new process with a new manager reads back the same state, field for field."""
        manager = StateManager(store, clock=clock)
        manager.increment_iteration("restart", note="one")
        manager.append_feedback("restart", entry(1, description="ünïcode ✓"))
        manager.record_error("restart", "e1")
        manager.update_metadata("restart", {"nested": {"list": [1, 2.5, None, True]}})
        expected = manager.get_state("restart").to_dict()

        code = (
            "import json, sys\n"
            "from tests.backends import StoreSpec\n"
            "from remstate import StateManager\n"
            "spec = StoreSpec(**json.loads(sys.argv[1]))\n"
            "with spec.open() as store:\n"
            "    print(json.dumps(StateManager(store).get_state('restart').to_dict()))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, json.dumps(dataclasses.asdict(store_spec))],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        assert json.loads(out.stdout) == expected


class TestPublicErrors:
    def test_every_failure_is_a_remstate_error(self, manager: StateManager) -> None:
        """Operations fail only with RemstateError subclasses."""
        calls = [
            lambda: manager.get_state("missing"),
            lambda: manager.resolve_feedback("missing", "x"),
            lambda: manager.get_feedback_history("missing"),
            lambda: manager.set_status("x", "nope"),
        ]
        for call in calls:
            with pytest.raises(RemstateError):
                call()


def _bulky(i: int) -> FeedbackEntry:
    return entry(i, description=f"{i} " + "lorem ipsum dolor sit amet " * 16)


def _segments(store: Store) -> list[StoredObject]:
    return store.list(label_selector="remstate.io/role=history-segment").items


class TestAnotherWriterMeanwhile:
    """A manager remembers the last object it saw; another writer may have changed it."""

    def test_a_no_op_on_a_remembered_object_is_confirmed(self, store: Store, clock: Clock) -> None:
        """set_status, metadata and resolve that look like no-ops re-read, and then write."""
        a = StateManager(store, clock=clock)
        b = StateManager(store, clock=clock)
        a.set_status("t", "completed")
        a.update_metadata("t", {"k": 1})
        a.append_feedback("t", entry(1))
        a.resolve_feedback("t", "fb-000001")
        b.set_status("t", "failed")
        b.update_metadata("t", {"k": 2})
        b.resolve_feedback("t", "fb-000001", resolved=False)
        a.set_status("t", "completed")
        a.update_metadata("t", {"k": 1})
        a.resolve_feedback("t", "fb-000001")
        state = b.get_state("t")
        assert state.status == Status.COMPLETED
        assert state.metadata == {"k": 1}
        assert state.feedback_history[0].resolved is True

    def test_an_append_after_delete_and_recreate_lands(self, store: Store, clock: Clock) -> None:
        """An append that a stale manager thinks is there already is written again."""
        a = StateManager(store, clock=clock)
        b = StateManager(store, clock=clock)
        a.append_feedback("t", entry(1))
        b.delete_state("t")
        b.get_or_create_state("t")
        a.append_feedback("t", entry(1))
        assert [e.id for e in b.get_state("t").feedback_history] == ["fb-000001"]

    def test_labels_and_annotations_of_others_are_kept(
        self, manager: StateManager, store: Store
    ) -> None:
        """A label or annotation added by someone else (kubectl) survives our writes."""
        manager.increment_iteration("t")
        obj = store.get(object_name("t"))
        store.replace(
            dataclasses.replace(
                obj,
                labels={**obj.labels, "team": "infra"},
                annotations={**obj.annotations, "owner": "alice@example.com"},
            )
        )
        manager.increment_iteration("t")
        after = store.get(object_name("t"))
        assert after.labels["team"] == "infra"
        assert after.annotations["owner"] == "alice@example.com"


class TestHistorySegments:
    def test_history_moves_to_segments_and_reads_back_in_order(
        self, manager: StateManager, store: Store
    ) -> None:
        """Enough feedback moves to owned segment objects; paging still sees every entry."""
        for i in range(400):
            manager.append_feedback("h", _bulky(i))
        state = manager.get_state("h")
        segments = _segments(store)
        assert state.segments
        assert {s.uid for s in segments} == {s.uid for s in state.segments}
        head = store.get(object_name("h"))
        assert all(s.owner_references[0].uid == head.uid for s in segments)
        page = manager.get_feedback_history("h", limit=10_000)
        assert [e.id for e in page.entries] == [f"fb-{i:06d}" for i in range(400)]
        assert page.next_cursor is None

    @pytest.mark.parametrize("newest_first", [False, True])
    def test_small_pages_cross_segment_boundaries(
        self, manager: StateManager, newest_first: bool
    ) -> None:
        """Pages of 37, either way, cross head and segments and see every entry once."""
        for i in range(400):
            manager.append_feedback("h", _bulky(i))
        assert len(manager.get_state("h").segments) >= 2
        seen: list[str] = []
        cursor = None
        while True:
            page = manager.get_feedback_history(
                "h", limit=37, cursor=cursor, newest_first=newest_first
            )
            assert len(page.entries) <= 37
            seen.extend(e.id for e in page.entries)
            cursor = page.next_cursor
            if cursor is None:
                break
        expected = [f"fb-{i:06d}" for i in range(400)]
        assert seen == (expected[::-1] if newest_first else expected)

    def test_a_conflict_after_commit_never_deletes_a_referenced_segment(
        self, store: Store, clock: Clock
    ) -> None:
        """A re-sent PUT answered 409 after its first copy committed keeps its segments."""
        lossy = LosesResponses(store, losses=0, methods=frozenset({"replace"}), error=Conflict)
        manager = StateManager(lossy, clock=clock)  # type: ignore[arg-type]
        for i in range(1, 1000):
            lossy.losses = 1  # every write commits, then answers 409
            manager.append_feedback("h", _bulky(i - 1))
            if manager.get_state("h").segments:
                break
        state = manager.get_state("h")
        assert {s.uid for s in _segments(store)} >= {s.uid for s in state.segments}
        page = manager.get_feedback_history("h", limit=10_000)
        assert [e.id for e in page.entries] == [f"fb-{k:06d}" for k in range(i)]

    def test_a_refused_head_write_leaves_no_orphan_segment(
        self, store: Store, clock: Clock
    ) -> None:
        """When the head refuses the write for certain, the segments made for it are removed."""
        manager = StateManager(store, clock=clock)
        i = 0
        while True:  # fill the head until the next append moves history to a segment
            state = manager.get_or_create_state("h")
            more = (*state.feedback_history, _bulky(i))
            if plan_compaction(dataclasses.replace(state, feedback_history=more)) is not None:
                break
            manager.append_feedback("h", _bulky(i))
            i += 1
        refusing = LosesResponses(
            store, losses=1, methods=frozenset({"replace"}), error=Conflict, commit=False
        )
        failing = StateManager(
            refusing,
            clock=clock,
            retry=RetryPolicy.none(),  # type: ignore[arg-type]
        )
        with pytest.raises(RemstateError):
            failing.append_feedback("h", _bulky(i))
        assert _segments(store) == []
        assert manager.get_state("h").feedback_total == i

    def test_update_state_refuses_a_feedback_id_held_in_a_segment(
        self, manager: StateManager, store: Store
    ) -> None:
        """An entry whose id moved to a segment long ago is not appended again by update_state."""
        for i in range(400):
            manager.append_feedback("h", _bulky(i))
        state = manager.get_state("h")
        assert "fb-000000" not in {e.id for e in state.feedback_history}
        version = store.get(object_name("h")).resource_version
        with pytest.raises(InvalidInput):
            manager.update_state(
                "h",
                lambda s: dataclasses.replace(s, feedback_history=(*s.feedback_history, entry(0))),
            )
        assert store.get(object_name("h")).resource_version == version
        page = StateManager(store).get_feedback_history("h", limit=10_000)
        assert [e.id for e in page.entries] == [f"fb-{i:06d}" for i in range(400)]

    def test_a_short_segment_is_reported_not_looped_on(
        self, manager: StateManager, store: Store
    ) -> None:
        """A segment holding fewer entries than its index says raises CorruptState."""
        for i in range(400):
            manager.append_feedback("h", _bulky(i))
        [first, *_] = sorted(_segments(store), key=lambda o: o.name)
        held = decode_segment(first)
        store.replace(
            dataclasses.replace(
                first,
                data=encode_segment("h", held.n, held.first_seq, held.entries[:1]),
            )
        )
        with pytest.raises(CorruptState):
            StateManager(store).get_feedback_history("h", limit=10_000)

    def test_a_lost_response_on_a_large_batch_does_not_duplicate(
        self, store: Store, clock: Clock
    ) -> None:
        """A 10,000-entry batch whose writes' responses are lost ends with 10,000 entries."""
        lossy = LosesResponses(store, losses=0, methods=frozenset({"replace"}))
        manager = StateManager(lossy, clock=clock)  # type: ignore[arg-type]
        manager.get_or_create_state("b")
        lossy.losses = 1  # the first head write of the batch commits, and its response is lost
        stored = manager.append_feedback_many("b", [entry(i) for i in range(10_000)])
        assert [e.id for e in stored] == [f"fb-{i:06d}" for i in range(10_000)]
        assert manager.get_state("b").feedback_total == 10_000

    def test_delete_removes_the_segments_too(self, manager: StateManager, store: Store) -> None:
        """delete_state removes the head and every history segment."""
        for i in range(400):
            manager.append_feedback("h", _bulky(i))
        assert _segments(store)
        assert manager.delete_state("h") is True
        assert store.list().items == []

    def test_delete_with_a_lost_response_reports_the_deletion(
        self, store: Store, clock: Clock
    ) -> None:
        """A delete that committed but lost its response still returns True and cleans up."""
        writer = StateManager(store, clock=clock)
        for i in range(400):
            writer.append_feedback("h", _bulky(i))
        lossy = LosesResponses(store, losses=1, methods=frozenset({"delete"}))
        assert StateManager(lossy, clock=clock).delete_state("h") is True  # type: ignore[arg-type]
        assert store.list().items == []


class TestUnknownOutcome:
    def test_an_update_function_is_not_applied_twice_after_a_lost_response(
        self, store: Store, clock: Clock
    ) -> None:
        """A committed update whose response was lost is recognised by its write id."""
        lossy = LosesResponses(store, losses=0)
        manager = StateManager(lossy, clock=clock)  # type: ignore[arg-type]
        manager.update_metadata("u", {"n": 0})
        lossy.losses = 1
        manager.update_state(
            "u", lambda s: dataclasses.replace(s, metadata={"n": s.metadata["n"] + 1})
        )
        assert manager.get_state("u").metadata == {"n": 1}


class TestResolvingArchivedFeedback:
    def _archive(self, manager: StateManager, count: int = 400) -> TaskState:
        for i in range(count):
            manager.append_feedback("r", _bulky(i))
        state = manager.get_state("r")
        assert state.segments
        return state

    def test_an_archived_entry_can_be_resolved(
        self, manager: StateManager, store: Store, clock: Clock
    ) -> None:
        """Resolving an entry in a segment shows in pages; the segment object is unchanged."""
        self._archive(manager)
        before = {o.name: o.resource_version for o in _segments(store)}
        clock.tick(30)
        resolved = manager.resolve_feedback("r", "fb-000003")
        assert (resolved.resolved, resolved.resolved_at) == (True, clock.now)
        page = StateManager(store).get_feedback_history("r", limit=10)
        assert [e.resolved for e in page.entries] == [i == 3 for i in range(10)]
        assert {o.name: o.resource_version for o in _segments(store)} == before
        again = manager.resolve_feedback("r", "fb-000003", resolved=False)
        assert again.resolved is False
        assert not StateManager(store).get_feedback_history("r", limit=10).entries[3].resolved

    def test_past_the_overlay_limit_resolving_archived_entries_is_refused(
        self, manager: StateManager, store: Store, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Past RESOLUTIONS_LIMIT, another archived resolution raises and writes nothing."""
        monkeypatch.setattr("remstate.manager.RESOLUTIONS_LIMIT", 8)
        self._archive(manager)
        for i in range(8):
            manager.resolve_feedback("r", f"fb-{i:06d}")
        version = store.get(object_name("r")).resource_version
        with pytest.raises(InvalidInput):
            manager.resolve_feedback("r", "fb-000020")
        assert store.get(object_name("r")).resource_version == version
        manager.resolve_feedback("r", "fb-000003", resolved=False)  # one it holds: fine
        page = StateManager(store).get_feedback_history("r", limit=10)
        assert [e.resolved for e in page.entries] == [i < 8 and i != 3 for i in range(10)]

    def test_resolving_an_unknown_id_is_refused(self, manager: StateManager) -> None:
        """An id the task never had raises InvalidInput, even with an archived history."""
        self._archive(manager)
        with pytest.raises(InvalidInput):
            manager.resolve_feedback("r", "never-there")


class TestSurprisesBetweenAttempts:
    def test_a_refused_write_is_never_reported_as_done(self, store: Store, clock: Clock) -> None:
        """A stale manager's batch, after the task was deleted meanwhile, is really stored."""
        a = StateManager(store, clock=clock)
        b = StateManager(store, clock=clock)
        a.get_or_create_state("t")
        b.delete_state("t")
        stored = a.append_feedback_many("t", [_bulky(i) for i in range(300)])
        assert len(stored) == 300
        assert StateManager(store).get_state("t").feedback_total == 300

    def test_a_lost_batch_is_found_after_many_newer_entries(
        self, store: Store, clock: Clock
    ) -> None:
        """A batch committed unseen is not appended again, even after 5,000 newer entries."""
        other = StateManager(store, clock=clock)
        mine = [entry(i, id=f"mine-{i}") for i in range(2000)]

        class LateRetry(LosesResponses):
            """Loses the first head write's response; others write before the retry."""

            def __getattr__(self, name: str) -> object:
                attr = super().__getattr__(name)
                if name != "get" or self.losses or not pending:
                    return attr
                pending.clear()
                other.append_feedback_many("t", [entry(i) for i in range(5000)])
                return attr

        pending: list[bool] = []
        lossy = LateRetry(store, losses=0, methods=frozenset({"replace"}))
        manager = StateManager(lossy, clock=clock)  # type: ignore[arg-type]
        manager.get_or_create_state("t")
        lossy.losses = 1
        pending.append(True)  # the first read after the lost write lets the others in
        manager.append_feedback_many("t", mine)
        ids = [e.id for e in StateManager(store).get_feedback_history("t", limit=10_000).entries]
        assert ids[:2000] == [e.id for e in mine]
        assert len(ids) == len(set(ids)) == 7000

    def test_a_lost_delete_does_not_delete_the_task_created_since(
        self, store: Store, clock: Clock
    ) -> None:
        """If our delete went through unseen and the task was created again, it survives."""
        StateManager(store, clock=clock).increment_iteration("t")
        other = StateManager(store, clock=clock)

        class RecreatedMeanwhile(LosesResponses):
            def __getattr__(self, name: str) -> object:
                attr = super().__getattr__(name)
                if name == "get" and not self.losses and pending:
                    pending.clear()
                    other.increment_iteration("t")
                return attr

        pending = [True]
        lossy = RecreatedMeanwhile(store, losses=1, methods=frozenset({"delete"}))
        assert StateManager(lossy, clock=clock).delete_state("t") is True  # type: ignore[arg-type]
        assert StateManager(store).get_state("t").iteration == 1

    @pytest.mark.parametrize("newest_first", [False, True])
    def test_a_segment_with_more_entries_than_its_index_is_corrupt(
        self, manager: StateManager, store: Store, newest_first: bool
    ) -> None:
        """A segment holding more entries than its index says raises CorruptState, either way."""
        for i in range(400):
            manager.append_feedback("h", _bulky(i))
        [first, *_] = sorted(_segments(store), key=lambda o: o.name)
        held = decode_segment(first)
        extra = (*held.entries, _bulky(9999))
        store.replace(
            dataclasses.replace(first, data=encode_segment("h", held.n, held.first_seq, extra))
        )
        with pytest.raises(CorruptState):
            StateManager(store).get_feedback_history("h", limit=10_000, newest_first=newest_first)
