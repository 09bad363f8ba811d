"""The corruption matrix: each kind of damage, injected through the raw store, then repaired.

Every case runs on both backends (the Kubernetes one against the real API
server). Each checks the report (the kind of problem and its key), the repair
(the kind repaired), that the snapshot holds the original object verbatim,
that nothing the repair could keep was lost (the data each case names as
kept is read back), and that what was lost is named.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from remstate import FeedbackEntry, StateManager, TaskState
from remstate.errors import CorruptState, InvalidInput, NotFound, StateNotFound
from remstate.schema import ProblemCode, object_name, parse_ranges
from remstate.schema.repair_history import REPAIRED_NOTE
from remstate.snapshots import ANNOTATION_SNAPSHOT_REASON
from remstate.store import Store, StoredObject
from tests.helpers import entry

TASK = "42"
NAME = object_name(TASK)


class Clock:
    """A clock that moves only when told."""

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


def healthy(manager: StateManager, clock: Clock) -> StoredObject:
    """A task with 3 iterations, 3 feedback entries, 1 error and metadata; its head."""
    manager.set_status(TASK, "in_progress")
    for i in range(3):
        clock.tick()
        manager.increment_iteration(TASK, note=f"attempt {i + 1}")
    for i in range(3):
        manager.append_feedback(TASK, entry(i))
    manager.record_error(TASK, "the build broke", id="err-1")
    manager.update_metadata(TASK, {"team": "payments"})
    return manager.store.get(NAME)


def data_of(obj: StoredObject) -> dict[str, str]:
    assert obj.data is not None
    return dict(obj.data)


def with_data(**changes: str | None) -> Callable[[Store, StoredObject], None]:
    """Replace (or, with None, remove) data keys of the head through the raw store."""

    def inject(store: Store, head: StoredObject) -> None:
        data = data_of(head)
        for key, value in changes.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        store.replace(dataclasses.replace(head, data=data))

    return inject


def with_entries(
    key: str, change: Callable[[list[dict[str, object]]], None]
) -> Callable[[Store, StoredObject], None]:
    """Change the decoded entries of one JSON array of the head."""

    def inject(store: Store, head: StoredObject) -> None:
        data = data_of(head)
        entries = json.loads(data[key])
        change(entries)
        data[key] = json.dumps(entries)
        store.replace(dataclasses.replace(head, data=data))

    return inject


def _bad_severity(entries: list[dict[str, object]]) -> None:
    entries[1]["severity"] = 5


def _bad_timestamp(entries: list[dict[str, object]]) -> None:
    entries[1]["timestamp"] = "the day before yesterday"


def _duplicate(entries: list[dict[str, object]]) -> None:
    entries.append({**entries[0], "description": "a different finding, same id"})


def _v0(store: Store, head: StoredObject) -> None:
    """The original sketch's layout: no schema_version, IDs or iteration records."""
    data = {
        "task_id": TASK,
        "iteration": "2",
        "status": "in_progress",
        "last_update": "2024-05-01T12:00:00",
        "feedback_history": json.dumps(
            [
                {
                    "timestamp": "2024-05-01T11:00:00",
                    "author": "alice",
                    "severity": "high",
                    "issue_type": "bug",
                    "description": "null pointer",
                    "resolved": False,
                }
            ]
        ),
        "error_messages": json.dumps(["timeout"]),
        "metadata": json.dumps({"team": "payments"}),
    }
    store.replace(StoredObject(name=NAME, data=data, resource_version=head.resource_version))


def has_history(state: TaskState) -> None:
    assert state.iteration == 3
    assert [r.note for r in state.iteration_history] == ["attempt 1", "attempt 2", "attempt 3"]


def has_feedback(state: TaskState) -> None:
    assert [e.id for e in state.feedback_history] == ["fb-000000", "fb-000001", "fb-000002"]


def has_errors(state: TaskState) -> None:
    assert [e.message for e in state.error_messages] == ["the build broke"]


def has_metadata(state: TaskState) -> None:
    assert state.metadata == {"team": "payments"}


def has_all(state: TaskState) -> None:
    has_history(state)
    has_feedback(state)
    has_errors(state)
    has_metadata(state)
    assert state.status == "in_progress"


def counts(n: int, note: str) -> Callable[[TaskState], None]:
    """The counter is ``n``, with ``n`` records; those made up carry ``note``."""

    def check(state: TaskState) -> None:
        assert state.iteration == n
        assert [r.iteration for r in state.iteration_history] == list(range(1, n + 1))
        assert all(r.note in {note, f"attempt {r.iteration}"} for r in state.iteration_history)

    return check


def feedback_ids(*ids: str) -> Callable[[TaskState], None]:
    def check(state: TaskState) -> None:
        assert [e.id for e in state.feedback_history] == list(ids)

    return check


def kept_timestamp(state: TaskState) -> None:
    extra = state.feedback_history[1].extra
    assert extra["unreadable_timestamp"] == "the day before yesterday"


def renamed_duplicate(state: TaskState) -> None:
    assert [e.id for e in state.feedback_history[:3]] == ["fb-000000", "fb-000001", "fb-000002"]
    copy = state.feedback_history[3]
    assert copy.extra["renamed_from"] == "fb-000000"
    assert copy.id != "fb-000000"
    assert copy.description == "a different finding, same id"


def migrated(state: TaskState) -> None:
    assert state.iteration == 2
    assert len(state.iteration_history) == 2
    assert [e.description for e in state.feedback_history] == ["null pointer"]
    assert [e.message for e in state.error_messages] == ["timeout"]
    assert state.metadata == {"team": "payments"}


@dataclass(frozen=True)
class Case:
    """One kind of corruption: how it is injected, what is reported, kept and lost."""

    name: str
    inject: Callable[[Store, StoredObject], None]
    #: (kind, key) pairs the validation must report.
    found: set[tuple[ProblemCode, str]]
    kept: Callable[[TaskState], None]
    lost: set[str] = field(default_factory=set)


def _without(*checks: Callable[[TaskState], None]) -> Callable[[TaskState], None]:
    def check(state: TaskState) -> None:
        for one in checks:
            one(state)

    return check


MALFORMED = "[{not json"
CASES = [
    # a malformed JSON value in each data key
    Case(
        "malformed-feedback",
        with_data(feedback_history=MALFORMED),
        {(ProblemCode.MALFORMED_JSON, "feedback_history")},
        _without(has_history, has_errors, has_metadata),
        {"feedback_history"},
    ),
    Case(
        "malformed-iterations",
        with_data(iteration_history=MALFORMED),
        {(ProblemCode.MALFORMED_JSON, "iteration_history")},
        # The counter stays 3; the records are made up (noted), the originals named lost.
        _without(has_feedback, has_errors, has_metadata, counts(3, REPAIRED_NOTE)),
        {"iteration_history"},
    ),
    Case(
        "malformed-errors",
        with_data(error_messages=MALFORMED),
        {(ProblemCode.MALFORMED_JSON, "error_messages")},
        _without(has_history, has_feedback, has_metadata),
        {"error_messages"},
    ),
    Case(
        "malformed-metadata",
        with_data(metadata="{team:"),
        {(ProblemCode.MALFORMED_JSON, "metadata")},
        _without(has_history, has_feedback, has_errors),
        {"metadata"},
    ),
    Case(
        "malformed-history-index",
        with_data(history_index="{oops"),
        {(ProblemCode.MALFORMED_JSON, "history_index")},
        has_all,
        {"history_index"},
    ),
    # one bad entry in a list: the others are kept
    Case(
        "bad-entry",
        with_entries("feedback_history", _bad_severity),
        {(ProblemCode.BAD_VALUE, "feedback_history[1].severity")},
        _without(has_history, has_errors, has_metadata, feedback_ids("fb-000000", "fb-000002")),
        {"feedback_history[1]"},
    ),
    # a missing key
    Case(
        "missing-status",
        with_data(status=None),
        {(ProblemCode.MISSING_KEY, "status")},
        has_all,  # from the status label
    ),
    Case(
        "missing-task-id",
        with_data(task_id=None),
        set(),  # the annotation stands in: a reader tolerates it; the repair writes it back
        has_all,
    ),
    Case(
        "missing-iteration",
        with_data(iteration=None),
        {(ProblemCode.MISSING_KEY, "iteration")},
        has_all,
    ),
    Case(
        "missing-last-update",
        with_data(last_update=None),
        {(ProblemCode.MISSING_KEY, "last_update")},
        has_all,
    ),
    Case(
        "missing-feedback",
        with_data(feedback_history=None),
        {(ProblemCode.MISSING_KEY, "feedback_history")},
        _without(has_history, has_errors, has_metadata),
    ),
    # a bad timestamp
    Case(
        "bad-last-update",
        with_data(last_update="yesterday"),
        {(ProblemCode.BAD_TIMESTAMP, "last_update")},
        has_all,
        {"last_update"},
    ),
    Case(
        "bad-entry-timestamp",
        with_entries("feedback_history", _bad_timestamp),
        {(ProblemCode.BAD_TIMESTAMP, "feedback_history[1].timestamp")},
        _without(has_all, kept_timestamp),
    ),
    # an unknown or broken encoding
    Case(
        "unknown-encoding",
        with_data(feedback_history="zstd+base64:KLUv/QBYAQAA"),
        {(ProblemCode.UNKNOWN_ENCODING, "feedback_history")},
        _without(has_history, has_errors, has_metadata),
        {"feedback_history"},
    ),
    Case(
        "broken-base64",
        with_data(metadata="gzip+base64:!!not base64!!"),
        {(ProblemCode.BAD_ENCODING, "metadata")},
        _without(has_history, has_feedback, has_errors),
        {"metadata"},
    ),
    Case(
        "broken-gzip",
        with_data(error_messages="gzip+base64:aGVsbG8gd29ybGQ="),
        {(ProblemCode.BAD_ENCODING, "error_messages")},
        _without(has_history, has_feedback, has_metadata),
        {"error_messages"},
    ),
    # an iteration counter that disagrees with the iteration history
    Case(
        "counter-behind",
        with_data(iteration="1"),
        {(ProblemCode.ITERATION_MISMATCH, "iteration")},
        has_all,  # the records win: 3
    ),
    Case(
        "counter-ahead",
        with_data(iteration="5"),
        {(ProblemCode.ITERATION_MISMATCH, "iteration")},
        _without(has_feedback, has_errors, has_metadata, counts(5, REPAIRED_NOTE)),
    ),
    # other damage a reader refuses
    Case(
        "other-task-id",
        with_data(task_id="43"),
        {(ProblemCode.TASK_ID_MISMATCH, "task_id")},
        has_all,
        {"task_id"},
    ),
    Case(
        "duplicate-id",
        with_entries("feedback_history", _duplicate),
        {(ProblemCode.DUPLICATE_ID, "feedback_history")},
        _without(has_history, has_errors, has_metadata, renamed_duplicate),
    ),
    # a history index naming a segment that is not there (nor can be: a bad name)
    Case(
        "index-names-a-bad-segment",
        with_data(
            history_index=json.dumps(
                {
                    "segments": [
                        {
                            "n": 1,
                            "name": "no/such-segment",
                            "first_seq": 0,
                            "count": 2,
                            "uid": "u",
                            "kind": "feedback",
                        }
                    ],
                    "recent_moved": {},
                }
            )
        ),
        {(ProblemCode.INDEX_MISMATCH, "history_index")},
        has_all,
        {"history segment no/such-segment"},
    ),
    # an older schema version
    Case(
        "schema-version-0",
        _v0,
        {(ProblemCode.OUTDATED_SCHEMA_VERSION, "schema_version")},
        migrated,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corruption_is_reported_repaired_and_kept(
    case: Case, store: Store, manager: StateManager, clock: Clock
) -> None:
    """Reported by kind and key; repaired after a snapshot of the original; nothing kept lost."""
    head = healthy(manager, clock)
    case.inject(store, head)
    corrupt = store.get(NAME)

    report = manager.validate_state(TASK)
    found = {(p.kind, p.key) for p in report.problems}
    assert case.found <= found, report.problems
    assert store.get(NAME).resource_version == corrupt.resource_version  # validation wrote nothing

    recovered = manager.recover_state(TASK)
    assert recovered.written, recovered
    assert recovered.snapshot is not None
    repaired = {
        (r.kind, r.key.split(".")[0] if "[" not in r.key else r.key) for r in recovered.repaired
    }
    for kind, key in case.found:
        assert any(r.kind == kind for r in recovered.repaired), (kind, key, recovered.repaired)
    assert repaired  # something was done, and said
    assert {x.key for x in recovered.lost} == case.lost
    assert recovered.remaining == ()

    snapshot = store.get(recovered.snapshot)
    assert snapshot.data == corrupt.data  # the original, verbatim
    assert snapshot.owner_references[0].uid == corrupt.uid
    assert snapshot.annotations[ANNOTATION_SNAPSHOT_REASON] == "recover"

    state = StateManager(store).get_state(TASK)  # a fresh reader: only what is stored
    case.kept(state)
    assert manager.validate_state(TASK).ok
    # Usable again: the next write goes through.
    manager.increment_iteration(TASK)


def test_the_matrix_covers_every_kind_the_issue_names() -> None:
    """Malformed JSON, missing key, bad timestamp, encodings, counter, index, older version."""
    kinds = {kind for case in CASES for kind, _ in case.found} | {ProblemCode.INDEX_MISMATCH}
    assert {
        ProblemCode.MALFORMED_JSON,
        ProblemCode.MISSING_KEY,
        ProblemCode.BAD_TIMESTAMP,
        ProblemCode.UNKNOWN_ENCODING,
        ProblemCode.BAD_ENCODING,
        ProblemCode.ITERATION_MISMATCH,
        ProblemCode.OUTDATED_SCHEMA_VERSION,
    } <= kinds


# -- the history index: segments missing, replaced or unreadable --------------------


def wordy(i: int) -> FeedbackEntry:
    """Entry ``i`` with a longer description, so that the history pages out sooner."""
    return entry(i, description=f"finding {i}: " + "the loop re-reads the object " * 4)


def with_segments(manager: StateManager) -> TaskState:
    """A task whose oldest feedback moved to at least two segments."""
    for start in range(0, 1200, 400):  # one segment per write that pages out
        manager.append_feedback_many(TASK, [wordy(i) for i in range(start, start + 400)])
    state = manager.get_state(TASK)
    assert len(state.segments_of("feedback")) >= 2
    return state


def all_ids(manager: StateManager) -> list[str]:
    page = manager.get_feedback_history(TASK, limit=10_000)
    assert page.next_cursor is None
    return [e.id for e in page.entries]


class TestHistoryIndex:
    def test_a_missing_segment_is_named_as_lost_and_the_rest_reads(
        self, store: Store, manager: StateManager
    ) -> None:
        """The index names a deleted segment: reported, left out, its records named lost."""
        state = with_segments(manager)
        gone = state.segments_of("feedback")[0]
        store.delete(gone.name)
        corrupt = store.get(NAME)
        with pytest.raises(CorruptState):
            all_ids(StateManager(store))

        report = manager.validate_state(TASK)
        assert any(
            p.kind == ProblemCode.INDEX_MISMATCH and gone.name in p.detail and p.repairable
            for p in report.problems
        )
        recovered = manager.recover_state(TASK)
        assert [x.key for x in recovered.lost] == [f"history segment {gone.name}"]
        assert f"{gone.count} feedback records" in recovered.lost[0].detail
        assert recovered.snapshot is not None
        assert store.get(recovered.snapshot).data == corrupt.data

        expected = [f"fb-{i:06d}" for i in range(gone.count, 1200)]
        assert all_ids(StateManager(store)) == expected  # every record that still exists
        assert manager.validate_state(TASK).ok

    def test_a_replaced_segment_that_reads_well_is_taken_as_it_is(
        self, store: Store, manager: StateManager
    ) -> None:
        """A segment deleted and written again (new uid): nothing is lost."""
        state = with_segments(manager)
        ref = state.segments_of("feedback")[0]
        original = store.get(ref.name)
        store.delete(ref.name)
        store.create(dataclasses.replace(original, resource_version="", uid=""))
        with pytest.raises(CorruptState):
            all_ids(StateManager(store))

        report = manager.validate_state(TASK)
        assert any("was replaced" in p.detail for p in report.problems)
        recovered = manager.recover_state(TASK)
        assert recovered.lost == ()
        assert all_ids(StateManager(store)) == [f"fb-{i:06d}" for i in range(1200)]
        assert manager.validate_state(TASK).ok

    def test_an_unreadable_segment_stays_in_place_and_the_snapshot_refers_to_it(
        self, store: Store, manager: StateManager
    ) -> None:
        """A segment whose data is broken leaves the index, not the store; cleanup keeps it."""
        state = with_segments(manager)
        ref = state.segments_of("feedback")[1]
        broken = store.get(ref.name)
        store.replace(
            dataclasses.replace(broken, data={**data_of(broken), "feedback_history": "[{"})
        )

        recovered = manager.recover_state(TASK)
        assert [x.key for x in recovered.lost] == [f"history segment {ref.name}"]
        assert "left in place" in recovered.lost[0].detail
        store.get(ref.name)  # still there
        assert recovered.snapshot is not None
        segments = store.get(recovered.snapshot).annotations["remstate.io/segments"]
        assert ref.n in parse_ranges(segments)
        ids = all_ids(StateManager(store))
        assert len(ids) == 1200 - ref.count
        assert manager.validate_state(TASK).ok


# -- what is never repaired ----------------------------------------------------------


class TestLeftAlone:
    def test_a_newer_remstates_state_is_reported_unsupported_and_left_alone(
        self, store: Store, manager: StateManager, clock: Clock
    ) -> None:
        """schema_version 2: unsupported, not repairable; no write, no snapshot."""
        head = healthy(manager, clock)
        with_data(schema_version="2", iteration="99")(store, head)
        before = store.get(NAME)

        report = manager.validate_state(TASK)
        assert not report.supported
        assert not any(p.repairable for p in report.problems)
        recovered = manager.recover_state(TASK)
        assert not recovered.written
        assert recovered.snapshot is None
        assert store.get(NAME) == before
        assert manager.list_snapshots(TASK) == []

    def test_a_clean_state_is_not_written(
        self, store: Store, manager: StateManager, clock: Clock
    ) -> None:
        """Nothing to repair: no snapshot, no write."""
        head = healthy(manager, clock)
        assert manager.validate_state(TASK).ok
        recovered = manager.recover_state(TASK)
        assert not recovered.written
        assert store.get(NAME).resource_version == head.resource_version
        assert manager.list_snapshots(TASK) == []

    def test_a_missing_task_raises_state_not_found(self, manager: StateManager) -> None:
        """validate_state raises only when there is no object at all."""
        with pytest.raises(StateNotFound):
            manager.validate_state("nobody")
        with pytest.raises(StateNotFound):
            manager.recover_state("nobody")


# -- snapshots -----------------------------------------------------------------------


class TestSnapshots:
    def test_snapshots_are_bounded_newest_kept(self, store: Store, clock: Clock) -> None:
        """With snapshots_kept=3, seven repairs leave the newest three."""
        manager = StateManager(store, clock=clock, snapshots_kept=3)
        head = healthy(manager, clock)
        names = []
        for i in range(7):
            clock.tick()
            with_data(iteration=str(10 + i))(store, store.get(NAME))
            recovered = manager.recover_state(TASK)
            assert recovered.snapshot is not None
            names.append(recovered.snapshot)
        listed = manager.list_snapshots(TASK)
        assert [s.name for s in listed] == names[:-4:-1]
        assert [s.number for s in listed] == [7, 6, 5]
        assert all(s.reason == "recover" and s.task_id == TASK for s in listed)
        assert listed[0].taken_at == clock.now
        for old in names[:4]:
            with pytest.raises(NotFound):
                store.get(old)
        assert head.uid == store.get(NAME).uid

    def test_restore_takes_a_snapshot_first_and_puts_the_original_back(
        self, store: Store, manager: StateManager, clock: Clock
    ) -> None:
        """The repaired state is snapshotted, then the original written back, with a CAS."""
        head = healthy(manager, clock)
        with_data(iteration="1")(store, head)
        corrupt = store.get(NAME)
        recovered = manager.recover_state(TASK)
        assert recovered.snapshot is not None
        repaired = store.get(NAME)

        restored = manager.restore_snapshot(TASK, recovered.snapshot)
        assert restored.snapshot is not None
        assert store.get(restored.snapshot).data == repaired.data
        now = store.get(NAME)
        assert now.data == corrupt.data
        assert now.uid == corrupt.uid
        assert dict(now.labels) == dict(corrupt.labels)
        assert now.resource_version == restored.resource_version
        assert [s.name for s in manager.list_snapshots(TASK)][:1] == [restored.snapshot]

    def test_restore_is_a_compare_and_swap(
        self, store: Store, manager: StateManager, clock: Clock
    ) -> None:
        """A write between the restore's read and its write: it reads again, loses nothing."""
        head = healthy(manager, clock)
        with_data(iteration="1")(store, head)
        recovered = manager.recover_state(TASK)
        assert recovered.snapshot is not None

        class Racing:
            """The store, with one write by another writer before the first replace."""

            def __init__(self, inner: Store) -> None:
                self.inner = inner
                self.raced = False
                self.replaced: list[str] = []

            def __getattr__(self, name: str) -> object:
                return getattr(self.inner, name)

            def replace(self, obj: StoredObject) -> StoredObject:
                if not self.raced:
                    self.raced = True
                    StateManager(self.inner).increment_iteration(TASK, note="racing")
                self.replaced.append(obj.resource_version)
                return self.inner.replace(obj)

        racing = Racing(store)
        manager.store = racing  # type: ignore[assignment]
        restored = manager.restore_snapshot(TASK, recovered.snapshot)
        assert len(racing.replaced) == 2  # a Conflict, then a write on the fresh read
        # The racing write is in the snapshot taken before the restore that won.
        assert restored.snapshot is not None
        kept = StoredObject(name=NAME, data=store.get(restored.snapshot).data)
        assert "racing" in (kept.data or {})["iteration_history"]

    def test_restore_refuses_another_tasks_snapshot(
        self, store: Store, manager: StateManager, clock: Clock
    ) -> None:
        """A name that is not a snapshot of this task: InvalidInput, nothing written."""
        head = healthy(manager, clock)
        with pytest.raises(InvalidInput):
            manager.restore_snapshot(TASK, NAME)
        with pytest.raises(NotFound):
            manager.restore_snapshot(TASK, "task-42-state-s99")
        assert store.get(NAME).resource_version == head.resource_version

    def test_delete_state_removes_the_snapshots(
        self, store: Store, manager: StateManager, clock: Clock
    ) -> None:
        """delete_state deletes the head, its segments and its snapshots."""
        head = healthy(manager, clock)
        for i in range(2):
            with_data(iteration=str(9 + i))(store, store.get(NAME))
            manager.recover_state(TASK)
        assert len(manager.list_snapshots(TASK)) == 2
        assert manager.delete_state(TASK)
        assert manager.list_snapshots(TASK) == []
        assert store.list(label_selector="app.kubernetes.io/managed-by=remstate").items == []
        assert head.name == NAME


def test_repairs_are_counted_by_kind_when_the_manager_has_metrics(
    store: Store, manager: StateManager, clock: Clock
) -> None:
    """remstate_repairs_total{kind} counts each repair of a recover_state."""
    from remstate.metrics import Metrics

    head = healthy(manager, clock)
    with_data(metadata="{", iteration="1")(store, head)
    metrics = Metrics()
    manager.metrics = metrics  # type: ignore[attr-defined]
    recovered = manager.recover_state(TASK)
    value = metrics.registry.get_sample_value
    assert value("remstate_repairs_total", {"kind": "malformed_json"}) == 1
    assert value("remstate_repairs_total", {"kind": "iteration_mismatch"}) == 1
    assert sum(1 for _ in recovered.repaired) == 2


def test_each_repair_is_logged_with_task_kind_and_version(
    store: Store, manager: StateManager, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """One structured record per repair: task, problem kind, resourceVersion read."""
    head = healthy(manager, clock)
    with_data(iteration="1")(store, head)
    version = store.get(NAME).resource_version
    with caplog.at_level("INFO", logger="remstate.recovery"):
        manager.recover_state(TASK)
    records = [r for r in caplog.records if getattr(r, "problem", None)]
    assert [(r.task, r.problem, r.resource_version) for r in records] == [  # type: ignore[attr-defined]
        (TASK, "iteration_mismatch", version)
    ]


def test_an_unreadable_index_is_rebuilt_from_the_segments_the_head_named(
    store: Store, manager: StateManager
) -> None:
    """history_index is garbage: the segments remstate.io/segments names make it again."""
    state = with_segments(manager)
    head = store.get(NAME)
    with_data(history_index="{oops")(store, head)

    recovered = manager.recover_state(TASK)
    assert [x.key for x in recovered.lost] == ["history_index"]  # the raw value, in the snapshot
    assert any("rebuilt from segments" in r.detail for r in recovered.repaired)
    assert all_ids(StateManager(store)) == [f"fb-{i:06d}" for i in range(1200)]
    assert [s.n for s in StateManager(store).get_state(TASK).segments] == [
        s.n for s in state.segments if s.kind == "feedback"
    ]
    assert manager.validate_state(TASK).ok
