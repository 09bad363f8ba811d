"""The corruption matrix: each kind of damage, injected through the raw store, validated and repaired.

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
from remstate.schema import ProblemCode, object_name, segment_object
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


def with_entries(key: str, change: Callable[[list[dict[str, object]]], None]):  # type: ignore[no-untyped-def]
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
        lambda s: (
            (has_feedback(s), has_errors(s), has_metadata(s))
            and None
            or (s.iteration == 3 and len(s.iteration_history) == 3)
            or pytest.fail("counter")
        ),
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
        lambda s: (
            [e.id for e in s.feedback_history] == ["fb-000000", "fb-000002"]
            or pytest.fail(str(s.feedback_history))
        ),
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
        lambda s: (
            has_all(s)
            or s.feedback_history[1].extra.get("unreadable_timestamp") == "the day before yesterday"
            or pytest.fail("the original timestamp is not kept")
        ),
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
        lambda s: (
            (s.iteration == 5 and len(s.iteration_history) == 5)
            or pytest.fail(f"{s.iteration} {len(s.iteration_history)}")
        ),
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
        lambda s: (
            (
                len(s.feedback_history) == 4
                and s.feedback_history[3].extra.get("renamed_from") == "fb-000000"
                and s.feedback_history[3].description == "a different finding, same id"
            )
            or pytest.fail(str(s.feedback_history))
        ),
    ),
    # an older schema version
    Case(
        "schema-version-0",
        _v0,
        {(ProblemCode.OUTDATED_SCHEMA_VERSION, "schema_version")},
        lambda s: (
            (
                s.iteration == 2
                and len(s.iteration_history) == 2
                and [e.description for e in s.feedback_history] == ["null pointer"]
                and [e.message for e in s.error_messages] == ["timeout"]
            )
            or pytest.fail(str(s))
        ),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corruption_is_reported_repaired_and_kept(
    case: Case, store: Store, manager: StateManager, clock: Clock
) -> None:
    """Reported by kind and key; repaired after a snapshot of the original; nothing keepable lost."""
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
