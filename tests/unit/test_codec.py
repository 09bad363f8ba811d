"""The ConfigMap layout: exact round trips, version 0 migration, newer versions, corruption."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
import os
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remstate.errors import (
    CorruptState,
    InvalidInput,
    RemstateError,
    UnsupportedSchemaVersion,
)
from remstate.schema import (
    ANNOTATION_LAST_UPDATE,
    ANNOTATION_SCHEMA_VERSION,
    ANNOTATION_SOFT_DELETED_AT,
    ANNOTATION_TASK_ID,
    DATA_KEYS,
    GZIP_MARKER,
    KEY_FEEDBACK_RESOLUTIONS,
    KEY_HISTORY_INDEX,
    LABEL_LIFECYCLE,
    LABEL_MANAGED_BY,
    LABEL_ROLE,
    LABEL_STATUS,
    LABEL_TASK,
    MAX_DATA_BYTES,
    MIGRATED_NOTE,
    RESOLUTIONS_LIMIT,
    ErrorRecord,
    FeedbackEntry,
    HistoryIndex,
    IterationRecord,
    ProblemCode,
    SegmentRef,
    StateTooLarge,
    Status,
    TaskState,
    decode_segment,
    decode_state,
    decoding,
    encode_segment,
    encode_state,
    find_problems,
    find_segment_problems,
    label_value,
    last_update_of,
    object_name,
    owner_reference,
    salvage_state,
    segment_metadata,
    segment_name,
    segment_object,
    segment_ref,
    soft_deleted_at,
    state_object,
    validation,
    value_bytes,
)
from remstate.store.base import OwnerReference, StoredObject
from tests.helpers import T0
from tests.unit.strategies import FAST, task_states


def fb(i: int, **changes: Any) -> FeedbackEntry:
    fields: dict[str, Any] = {
        "id": f"e{i}",
        "timestamp": T0 + timedelta(seconds=i),
        "author": "alice",
        "severity": "high",
        "issue_type": "bug",
        "description": f"feedback {i}",
    }
    fields.update(changes)
    return FeedbackEntry(**fields)


def sample_state(**changes: Any) -> TaskState:
    fields: dict[str, Any] = {
        "task_id": "42",
        "iteration": 2,
        "status": Status.IN_PROGRESS,
        "last_update": T0,
        "iteration_history": (IterationRecord(1, T0), IterationRecord(2, T0, "second")),
        "feedback_history": (fb(0), fb(1, resolved=True, resolved_at=T0)),
        "error_messages": (ErrorRecord(T0, "boom"),),
        "metadata": {"repo": "org/repo", "pr": 5},
    }
    fields.update(changes)
    return TaskState(**fields)


def stored(state: TaskState, **kwargs: Any) -> StoredObject:
    data, labels, annotations = encode_state(state, **kwargs)
    return StoredObject(
        name=object_name(state.task_id),
        data=data,
        labels=labels,
        annotations=annotations,
        uid="u-1",
    )


def with_data(obj: StoredObject, **changes: str | None) -> StoredObject:
    data = dict(obj.data or {})
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return dataclasses.replace(obj, data=data)


def codes(problems: list[Any]) -> set[tuple[str, ProblemCode]]:
    return {(p.field, p.code) for p in problems}


class TestLayout:
    def test_data_keys_and_values(self) -> None:
        """The exact data of a small state: scalars verbatim, JSON compact, in order."""
        data = encode_state(sample_state()).data
        assert list(data) == list(DATA_KEYS)
        assert data["schema_version"] == "1"
        assert data["task_id"] == "42"
        assert data["iteration"] == "2"
        assert data["status"] == "in_progress"
        assert data["last_update"] == "2024-05-01T12:00:00Z"
        assert data["iteration_history"] == (
            '[{"iteration":1,"started_at":"2024-05-01T12:00:00Z"},'
            '{"iteration":2,"started_at":"2024-05-01T12:00:00Z","note":"second"}]'
        )
        assert json.loads(data["feedback_history"])[1] == {
            "id": "e1",
            "timestamp": "2024-05-01T12:00:01Z",
            "author": "alice",
            "severity": "high",
            "issue_type": "bug",
            "description": "feedback 1",
            "resolved": True,
            "resolved_at": "2024-05-01T12:00:00Z",
        }
        assert data["error_messages"] == '[{"timestamp":"2024-05-01T12:00:00Z","message":"boom"}]'
        assert data["metadata"] == '{"repo":"org/repo","pr":5}'

    def test_labels_and_annotations(self) -> None:
        """Labels for selection; annotations for metadata-only scans."""
        _, labels, annotations = encode_state(sample_state(task_id="Org/Repo#5"))
        assert labels == {
            LABEL_MANAGED_BY: "remstate",
            LABEL_TASK: label_value("Org/Repo#5"),
            LABEL_STATUS: "in_progress",
            LABEL_LIFECYCLE: "active",
            LABEL_ROLE: "state",
        }
        assert annotations == {
            ANNOTATION_TASK_ID: "Org/Repo#5",
            ANNOTATION_LAST_UPDATE: "2024-05-01T12:00:00Z",
            ANNOTATION_SCHEMA_VERSION: "1",
        }

    def test_unknown_status_label_is_sanitised(self) -> None:
        """A status from a newer version still gives a valid label value."""
        _, labels, _ = encode_state(sample_state(status="Waiting on CI!"))
        assert labels[LABEL_STATUS].startswith("waiting-on-ci--")

    def test_soft_deleted(self) -> None:
        """Soft deletion is a lifecycle label plus a time annotation."""
        obj = stored(sample_state(), soft_deleted_at=T0)
        assert obj.labels[LABEL_LIFECYCLE] == "soft-deleted"
        assert obj.annotations[ANNOTATION_SOFT_DELETED_AT] == "2024-05-01T12:00:00Z"
        assert soft_deleted_at(obj) == T0
        assert soft_deleted_at(stored(sample_state())) is None
        assert last_update_of(obj) == T0

    def test_history_index_only_with_segments(self) -> None:
        """``history_index`` appears only once history has moved to segments."""
        assert KEY_HISTORY_INDEX not in encode_state(sample_state()).data
        history = HistoryIndex((SegmentRef(1, "task-42-state-h1", 0, 2, "u"),), {"a": 1, "b": 1})
        data = encode_state(sample_state(history_index=history)).data
        assert json.loads(data[KEY_HISTORY_INDEX]) == {
            "segments": [
                {"n": 1, "name": "task-42-state-h1", "first_seq": 0, "count": 2, "uid": "u"}
            ],
            "recent_moved": {"1": ["a", "b"]},
        }

    def test_large_fields_are_compressed(self) -> None:
        """Large JSON values carry the gzip marker; small ones stay plain."""
        state = sample_state(feedback_history=tuple(fb(i) for i in range(500)))
        data = encode_state(state).data
        assert data["feedback_history"].startswith(GZIP_MARKER)
        assert data["metadata"].startswith("{")
        assert decode_state(stored(state)) == state

    def test_state_object(self) -> None:
        """``state_object`` names the object and carries the resourceVersion."""
        obj = state_object(sample_state(task_id="A/B"), resource_version="17")
        assert obj.name == object_name("A/B")
        assert obj.resource_version == "17"

    def test_too_large_raises_state_too_large(self) -> None:
        """What cannot fit under 1 MiB is refused before the store sees it."""
        metadata = {"blob": base64.b64encode(os.urandom(900_000)).decode()}
        with pytest.raises(StateTooLarge) as info:
            encode_state(sample_state(metadata=metadata))
        assert info.value.size > MAX_DATA_BYTES
        assert isinstance(info.value, InvalidInput)

    def test_extra_data_may_not_use_known_keys(self) -> None:
        """Unknown data keys cannot overwrite ours."""
        with pytest.raises(InvalidInput):
            encode_state(sample_state(extra_data={"status": "x"}))


class TestRoundTrip:
    """Specific round trips; the property tests of every type are in test_round_trips."""

    @FAST
    @given(state=task_states)
    def test_encoding_is_deterministic(self, state: TaskState) -> None:
        """The same state always encodes to the same data."""
        assert encode_state(state) == encode_state(dataclasses.replace(state))

    def test_very_large_values_round_trip(self) -> None:
        """Values near the limit, multi-byte, survive exactly."""
        state = sample_state(
            metadata={"big": "ü漢😀" * 60_000},
            feedback_history=(fb(0, description="é" * 65_000),),
            error_messages=(ErrorRecord(None, ""),),
        )
        obj = stored(state)
        assert value_bytes(obj.data or {}) < MAX_DATA_BYTES
        assert decode_state(obj) == state

    def test_empty_state_round_trips(self) -> None:
        """A new task with nothing in it round-trips."""
        state = TaskState.new("t", clock=lambda: T0)
        assert decode_state(stored(state)) == state

    def test_unknown_data_keys_are_kept(self) -> None:
        """A key this version does not know is read into extra_data and written back."""
        obj = with_data(stored(sample_state()), future_key="value")
        state = decode_state(obj)
        assert state.extra_data == {"future_key": "value"}
        assert encode_state(state).data["future_key"] == "value"


V0_NAME = "task-42-state"
V0_DATA = {
    "task_id": "42",
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
            },
            {
                "timestamp": "2024-05-01T11:30:00",
                "author": "bob",
                "severity": "Urgent",
                "issue_type": "bug",
                "description": "null pointer",
                "resolved": True,
            },
        ]
    ),
    "error_messages": json.dumps(["timeout talking to CI"]),
    "metadata": json.dumps({"repo": "org/repo"}),
}


class TestVersion0:
    def test_migrates_on_read(self) -> None:
        """A version 0 object reads as a full state: IDs, iterations, error records."""
        state = decode_state(StoredObject(name=V0_NAME, data=V0_DATA))
        assert state.schema_version == 0
        assert (state.task_id, state.iteration, state.status) == ("42", 2, Status.IN_PROGRESS)
        assert state.last_update == T0
        assert [e.author for e in state.feedback_history] == ["alice", "bob"]
        assert state.feedback_history[1].severity == "Urgent"  # unknown, kept
        assert all(e.id.startswith("v0-") for e in state.feedback_history)
        assert len({e.id for e in state.feedback_history}) == 2
        assert state.iteration_history == (
            IterationRecord(1, T0, MIGRATED_NOTE),
            IterationRecord(2, T0, MIGRATED_NOTE),
        )
        assert state.error_messages == (ErrorRecord(None, "timeout talking to CI"),)
        assert state.metadata == {"repo": "org/repo"}

    def test_ids_are_stable(self) -> None:
        """The same version 0 object always gives the same IDs (retries see the same)."""
        a = decode_state(StoredObject(name=V0_NAME, data=V0_DATA))
        b = decode_state(StoredObject(name=V0_NAME, data=dict(V0_DATA)))
        assert [e.id for e in a.feedback_history] == [e.id for e in b.feedback_history]

    def test_explicit_zero_is_version_0(self) -> None:
        """``schema_version: "0"`` reads as version 0."""
        state = decode_state(StoredObject(name=V0_NAME, data={**V0_DATA, "schema_version": "0"}))
        assert state.schema_version == 0

    def test_written_back_as_version_1(self) -> None:
        """Migrate on write: encoding writes version 1, which reads back equal."""
        state = decode_state(StoredObject(name=V0_NAME, data=V0_DATA))
        obj = stored(state)
        assert (obj.data or {})["schema_version"] == "1"
        again = decode_state(obj)
        assert again == state
        assert again.schema_version == 1
        assert find_problems(obj) == []

    def test_v0_is_valid(self) -> None:
        """An intact version 0 object has no problems (it lacks annotations by design)."""
        assert find_problems(StoredObject(name=V0_NAME, data=V0_DATA)) == []


class TestNewerVersion:
    def test_decode_raises_unsupported(self) -> None:
        """A newer schema version is a clear error; the reader does not guess."""
        obj = with_data(stored(sample_state()), schema_version="2")
        with pytest.raises(UnsupportedSchemaVersion) as info:
            decode_state(obj)
        assert (info.value.found, info.value.supported) == (2, 1)

    def test_validate_reports_unsupported_only(self) -> None:
        """The validator says why it cannot check, and checks nothing else."""
        obj = with_data(stored(sample_state()), schema_version="7", metadata="{broken")
        assert codes(find_problems(obj)) == {
            ("schema_version", ProblemCode.UNSUPPORTED_SCHEMA_VERSION)
        }

    def test_segment_newer_version(self) -> None:
        """Segments carry the version too."""
        obj = segment_object(sample_state(), [fb(0)])
        obj = with_data(obj, schema_version="3")
        with pytest.raises(UnsupportedSchemaVersion):
            decode_segment(obj)


class TestCorruption:
    @pytest.mark.parametrize(
        ("key", "value", "code"),
        [
            ("feedback_history", "[{", ProblemCode.MALFORMED_JSON),
            ("iteration_history", "zstd+b64:AAAA", ProblemCode.UNKNOWN_ENCODING),
            ("metadata", GZIP_MARKER + "@@@", ProblemCode.BAD_ENCODING),
            ("error_messages", "{}", ProblemCode.BAD_VALUE),
            ("metadata", "[]", ProblemCode.BAD_VALUE),
            ("iteration", "two", ProblemCode.BAD_VALUE),
            ("iteration", "-1", ProblemCode.BAD_VALUE),
            ("last_update", "yesterday", ProblemCode.BAD_TIMESTAMP),
            ("schema_version", "one", ProblemCode.BAD_VALUE),
            (KEY_HISTORY_INDEX, "[]", ProblemCode.BAD_VALUE),
        ],
    )
    def test_bad_field_raises_and_is_reported(
        self, key: str, value: str, code: ProblemCode
    ) -> None:
        """Decoding raises CorruptState naming the field; the validator gives its code."""
        obj = with_data(stored(sample_state()), **{key: value})
        with pytest.raises(CorruptState) as info:
            decode_state(obj)
        assert info.value.field == key
        assert info.value.task_id in ("42", None)
        assert (key, code) in codes(find_problems(obj))

    @pytest.mark.parametrize(
        ("entry", "field", "code"),
        [
            ({"id": "x"}, "feedback_history[1].timestamp", ProblemCode.MISSING_KEY),
            (
                {**fb(9).to_dict(), "timestamp": "soon"},
                "feedback_history[1].timestamp",
                ProblemCode.BAD_TIMESTAMP,
            ),
            (
                {**fb(9).to_dict(), "resolved": "yes"},
                "feedback_history[1].resolved",
                ProblemCode.BAD_VALUE,
            ),
            ("just a string", "feedback_history[1]", ProblemCode.BAD_VALUE),
        ],
    )
    def test_bad_entry_is_located(self, entry: Any, field: str, code: ProblemCode) -> None:
        """A bad entry is reported with its index and field."""
        good = fb(0).to_dict()
        obj = with_data(stored(sample_state()), feedback_history=json.dumps([good, entry]))
        with pytest.raises(CorruptState) as info:
            decode_state(obj)
        assert info.value.field == field
        assert codes(find_problems(obj)) == {(field, code)}

    def test_salvage_keeps_the_good_entries(self) -> None:
        """Salvage reads what it can: bad entries are left out and reported."""
        good = [fb(0).to_dict(), fb(2).to_dict()]
        obj = with_data(
            stored(sample_state()), feedback_history=json.dumps([good[0], {"id": 1}, good[1]])
        )
        state, problems = salvage_state(obj)
        assert state is not None
        assert [e.id for e in state.feedback_history] == ["e0", "e2"]
        assert problems

    @pytest.mark.parametrize(
        "key", ["iteration_history", "feedback_history", "error_messages", "metadata"]
    )
    def test_missing_json_key_reads_as_empty_and_is_reported(self, key: str) -> None:
        """Missing JSON keys default to empty when decoding; the validator reports them."""
        obj = with_data(stored(sample_state(iteration=0, iteration_history=())), **{key: None})
        decode_state(obj)
        assert (key, ProblemCode.MISSING_KEY) in codes(find_problems(obj))

    def test_missing_status_is_fatal(self) -> None:
        """No default for status is safe: CorruptState."""
        obj = with_data(stored(sample_state()), status=None)
        with pytest.raises(CorruptState) as info:
            decode_state(obj)
        assert info.value.field == "status"
        assert codes(find_problems(obj)) == {("status", ProblemCode.MISSING_KEY)}

    def test_missing_task_id_and_last_update_come_from_annotations(self) -> None:
        """The annotations stand in for a missing task_id or last_update."""
        obj = with_data(stored(sample_state()), task_id=None, last_update=None)
        state = decode_state(obj)
        assert (state.task_id, state.last_update) == ("42", T0)
        assert codes(find_problems(obj)) == {
            ("task_id", ProblemCode.MISSING_KEY),
            ("last_update", ProblemCode.MISSING_KEY),
        }

    def test_missing_last_update_falls_back_to_creation_time(self) -> None:
        """With no annotation either, the creation time stands in."""
        obj = dataclasses.replace(
            with_data(stored(sample_state()), last_update=None),
            annotations={},
            creation_timestamp=T0 - timedelta(days=1),
        )
        assert decode_state(obj).last_update == T0 - timedelta(days=1)

    def test_missing_iteration_is_counted(self) -> None:
        """A missing iteration is the length of the history."""
        obj = with_data(stored(sample_state()), iteration=None)
        assert decode_state(obj).iteration == 2
        assert codes(find_problems(obj)) == {("iteration", ProblemCode.MISSING_KEY)}

    def test_iteration_mismatch(self) -> None:
        """An iteration count that disagrees with the history is reported, and refused on read."""
        obj = stored(sample_state(iteration=5))
        with pytest.raises(CorruptState, match="iteration is 5 but iteration_history has 2"):
            decode_state(obj)
        assert decode_state(obj, check=False).iteration == 5
        assert codes(find_problems(obj)) == {("iteration", ProblemCode.ITERATION_MISMATCH)}

    def test_duplicate_ids(self) -> None:
        """Two entries with one ID, or an ID both in the head and moved, are reported."""
        history = HistoryIndex((SegmentRef(1, "task-42-state-h1", 0, 1, "u"),), {"e1": 1})
        obj = stored(sample_state(feedback_history=(fb(0), fb(0)), history_index=history))
        obj2 = stored(sample_state(history_index=history))
        assert codes(find_problems(obj)) == {("feedback_history", ProblemCode.DUPLICATE_ID)}
        assert codes(find_problems(obj2)) == {("feedback_history", ProblemCode.DUPLICATE_ID)}

    def test_index_mismatch(self) -> None:
        """Segments out of order, with gaps or wrongly named, are reported."""
        history = HistoryIndex(
            (
                SegmentRef(2, "task-42-state-h2", 0, 3, "u"),
                SegmentRef(1, "task-42-state-h1", 5, 3, "u"),
                SegmentRef(3, "elsewhere", 8, 3, "u"),
            )
        )
        problems = find_problems(stored(sample_state(history_index=history)))
        assert {p.code for p in problems} == {ProblemCode.INDEX_MISMATCH}
        assert len(problems) == 3

    def test_annotation_mismatch(self) -> None:
        """Cleanup reads annotations: missing or disagreeing ones are reported."""
        obj = stored(sample_state())
        obj = dataclasses.replace(
            obj,
            annotations={ANNOTATION_TASK_ID: "41", ANNOTATION_LAST_UPDATE: "2020-01-01T00:00:00Z"},
        )
        assert {p.code for p in find_problems(obj)} == {ProblemCode.ANNOTATION_MISMATCH}
        assert len(find_problems(obj)) == 2

    @pytest.mark.parametrize(
        ("key", "value"),
        [
            # The reviewer's case: json.loads recursed until RecursionError.
            ("metadata", "[" * 200_000),
            ("feedback_history", "[" * 200_000),
            ("iteration_history", "[" * 200_000),
            ("error_messages", '{"a":' * 200_000),
            (KEY_HISTORY_INDEX, "[" * 200_000),
            ("metadata", GZIP_MARKER + base64.b64encode(gzip.compress(b"[" * 200_000)).decode()),
            # Decodes, but is deeper than any state holds (normalising it recursed too).
            ("metadata", '{"a":' + "[" * 900 + "]" * 900 + "}"),
            # Floats JSON reads as infinity: the state cannot hold them.
            ("metadata", '{"a":1e400}'),
            # int() refuses more than 4300 digits with a ValueError.
            ("schema_version", "1" * 5000),
            (KEY_HISTORY_INDEX, '{"segments":[],"recent_moved":{"' + "1" * 5000 + '":["a"]}}'),
        ],
    )
    def test_hostile_values_are_corruption_not_crashes(self, key: str, value: str) -> None:
        """Whatever a value holds, decode raises CorruptState naming it; validate reports it."""
        obj = with_data(stored(sample_state()), **{key: value})
        with pytest.raises(CorruptState) as info:
            decode_state(obj)
        assert info.value.field is not None
        assert info.value.field.startswith(key)
        problems = find_problems(obj)
        assert any(p.field.startswith(key) for p in problems), problems
        state, salvaged = salvage_state(obj)
        assert salvaged == problems
        assert state is not None or key == "schema_version"

    @pytest.mark.parametrize("key", ["feedback_history", "iteration_history", "error_messages"])
    def test_too_deep_entry_is_left_out_and_located(self, key: str) -> None:
        """An entry whose unknown keys nest too deeply is one bad entry, not a crash."""
        good = json.loads(encode_state(sample_state()).data[key])[0]
        bad = {**good, "future": json.loads("[" * 500 + "]" * 500)}
        obj = with_data(stored(sample_state()), **{key: json.dumps([good, bad])})
        with pytest.raises(CorruptState) as info:
            decode_state(obj)
        assert info.value.field == f"{key}[1]"
        state, problems = salvage_state(obj)
        assert state is not None
        assert len(getattr(state, key)) == 1
        assert (f"{key}[1]", ProblemCode.BAD_VALUE) in codes(problems)

    def test_deep_segment_is_corruption(self) -> None:
        """Segments are read as safely: CorruptState, and problems from the validator."""
        data = {**encode_segment("t", 1, 0, [fb(0)]), "feedback_history": "[" * 200_000}
        obj = StoredObject(name="s", data=data)
        with pytest.raises(CorruptState) as info:
            decode_segment(obj)
        assert info.value.field == "feedback_history"
        assert codes(find_segment_problems(obj)) == {
            ("feedback_history", ProblemCode.MALFORMED_JSON),
            ("count", ProblemCode.INDEX_MISMATCH),
        }

    def test_any_surprise_while_reading_is_contained(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Last resort: an unexpected exception becomes CorruptState, or a problem on "data"."""

        def explode(*_: Any) -> Any:
            raise RecursionError("maximum recursion depth exceeded")

        monkeypatch.setattr(decoding, "_read_metadata", explode)
        monkeypatch.setattr(decoding, "read_segment", explode)
        monkeypatch.setattr(validation, "read_segment", explode)
        obj = stored(sample_state())
        with pytest.raises(CorruptState, match="nested too deeply") as info:
            decode_state(obj)
        assert isinstance(info.value.__cause__, RecursionError)
        assert codes(find_problems(obj)) == {("data", ProblemCode.BAD_VALUE)}
        assert salvage_state(obj)[0] is None
        segment = StoredObject(name="s", data=encode_segment("t", 1, 0, [fb(0)]))
        with pytest.raises(CorruptState):
            decode_segment(segment)
        assert codes(find_segment_problems(segment)) == {("data", ProblemCode.BAD_VALUE)}

    def test_our_own_errors_pass_through_unchanged(self) -> None:
        """The guard does not swallow remstate's errors: a newer version stays one."""
        obj = with_data(stored(sample_state()), schema_version="2")
        with pytest.raises(UnsupportedSchemaVersion):
            decode_state(obj)

    def test_metadata_only_object(self) -> None:
        """An object read without data cannot be decoded: InvalidInput; reported as no_data."""
        obj = StoredObject(name="x", data=None)
        with pytest.raises(InvalidInput):
            decode_state(obj)
        assert codes(find_problems(obj)) == {("data", ProblemCode.NO_DATA)}

    def test_intact_object_has_no_problems(self) -> None:
        """A state we wrote validates clean."""
        assert find_problems(stored(sample_state())) == []

    @FAST
    @given(
        data=st.dictionaries(
            st.sampled_from([*DATA_KEYS, KEY_HISTORY_INDEX, "other"]),
            st.text(max_size=30)
            | st.sampled_from(
                [
                    "[]",
                    "{}",
                    "1",
                    "[{}]",
                    '{"segments":[{}]}',
                    GZIP_MARKER,
                    "[" * 100_000,
                    "[" * 700 + "]" * 700,
                    '[{"k":' + "[" * 700 + "]" * 700 + "}]",
                    '{"a":1e400}',
                    "9" * 5000,
                    '{"recent_moved":{"' + "9" * 5000 + '":[]}}',
                ]
            ),
        )
    )
    def test_validator_never_raises_and_decoder_raises_only_ours(
        self, data: dict[str, str]
    ) -> None:
        """Whatever the data, the validator returns results and the decoder raises ours."""
        obj = StoredObject(name="x", data=data)
        problems = find_problems(obj)
        try:
            decode_state(obj)
        except RemstateError:
            assert problems
        salvage_state(obj)


class TestSegments:
    def test_layout(self) -> None:
        """A segment holds its number, first sequence, count and the entries."""
        data = encode_segment("Org/1", 3, 40, [fb(40), fb(41)])
        labels, annotations = segment_metadata("Org/1")
        assert {k: v for k, v in data.items() if k != "feedback_history"} == {
            "schema_version": "1",
            "task_id": "Org/1",
            "segment": "3",
            "first_seq": "40",
            "count": "2",
        }
        assert labels == {
            LABEL_MANAGED_BY: "remstate",
            LABEL_TASK: label_value("Org/1"),
            LABEL_ROLE: "history-segment",
        }
        assert annotations == {ANNOTATION_TASK_ID: "Org/1", ANNOTATION_SCHEMA_VERSION: "1"}

    def test_segment_object_and_ref(self) -> None:
        """The segment of a head's oldest entries, owned by the head; its ref for the index."""
        state = sample_state()
        head = StoredObject(name="task-42-state", uid="head-uid")
        obj = segment_object(state, [fb(0)], owner=owner_reference(head))
        assert obj.name == segment_name("42", 1)
        assert obj.owner_references == (
            OwnerReference(
                api_version="v1", kind="ConfigMap", name="task-42-state", uid="head-uid"
            ),
        )
        created = dataclasses.replace(obj, uid="seg-uid")
        assert segment_ref(created) == SegmentRef(1, obj.name, 0, 1, "seg-uid")

    def test_segment_object_refuses_non_prefix(self) -> None:
        """Only the oldest entries of the head can move."""
        with pytest.raises(InvalidInput):
            segment_object(sample_state(), [fb(1)])
        with pytest.raises(InvalidInput):
            segment_object(sample_state(), [])

    def test_segment_object_number_must_advance(self) -> None:
        """A taken name is skipped with a higher ``n``, never a lower one."""
        history = HistoryIndex((SegmentRef(4, "task-42-state-h4", 0, 1, "u"),))
        state = sample_state(history_index=history)
        assert segment_object(state, [fb(0)], n=6).name == "task-42-state-h6"
        with pytest.raises(InvalidInput):
            segment_object(state, [fb(0)], n=4)

    def test_owner_needs_uid(self) -> None:
        """The head must exist (have a uid) before it can own segments."""
        with pytest.raises(InvalidInput):
            owner_reference(StoredObject(name="task-42-state"))

    def test_corrupt_segment(self) -> None:
        """A broken segment raises CorruptState; the validator reports count mismatches too."""
        data = encode_segment("t", 1, 0, [fb(0)])
        with pytest.raises(CorruptState):
            decode_segment(StoredObject(name="s", data={**data, "feedback_history": "[x"}))
        problems = find_segment_problems(StoredObject(name="s", data={**data, "count": "5"}))
        assert codes(problems) == {("count", ProblemCode.INDEX_MISMATCH)}
        missing = find_segment_problems(StoredObject(name="s", data={"schema_version": "1"}))
        assert {p.code for p in missing} == {ProblemCode.MISSING_KEY}


def archived_state(**changes: Any) -> TaskState:
    """A state whose entries e0, e1 moved to segment 1; e2 is in the head."""
    history = HistoryIndex((SegmentRef(1, "task-42-state-h1", 0, 2, "u1"),), {"e0": 1, "e1": 1})
    fields: dict[str, Any] = {
        "feedback_history": (fb(2),),
        "history_index": history,
        "archived_resolutions": {"e0": T0, "e1": None},
    }
    fields.update(changes)
    return sample_state(**fields)


class TestFeedbackResolutions:
    def test_layout(self) -> None:
        """``feedback_resolutions``: ID -> RFC 3339 or null, plain JSON when small."""
        data = encode_state(archived_state()).data
        assert data[KEY_FEEDBACK_RESOLUTIONS] == '{"e0":"2024-05-01T12:00:00Z","e1":null}'
        assert list(data)[-1] == KEY_FEEDBACK_RESOLUTIONS

    def test_only_when_not_empty(self) -> None:
        """No resolutions, no key: objects written before it existed read back unchanged."""
        assert KEY_FEEDBACK_RESOLUTIONS not in encode_state(sample_state()).data
        state = archived_state(archived_resolutions={})
        assert KEY_FEEDBACK_RESOLUTIONS not in encode_state(state).data
        assert decode_state(stored(state)).archived_resolutions == {}

    def test_round_trip_and_valid(self) -> None:
        """Resolutions read back exactly, and the object validates clean."""
        obj = stored(archived_state())
        assert decode_state(obj) == archived_state()
        assert find_problems(obj) == []

    def test_large_resolutions_are_compressed_and_counted(self) -> None:
        """A full overlay is compressed, and its bytes count against the object's limit."""
        resolutions = {f"01J{i:023d}": T0 + timedelta(seconds=i) for i in range(RESOLUTIONS_LIMIT)}
        state = archived_state(archived_resolutions=resolutions)
        data = encode_state(state).data
        assert data[KEY_FEEDBACK_RESOLUTIONS].startswith(GZIP_MARKER)
        assert decode_state(stored(state)) == state
        without = encode_state(archived_state(archived_resolutions={})).data
        assert value_bytes(data) == value_bytes(without) + len(data[KEY_FEEDBACK_RESOLUTIONS])
        with pytest.raises(StateTooLarge):
            encode_state(state, max_bytes=value_bytes(data) - 1)

    @pytest.mark.parametrize(
        ("value", "code"),
        [
            ("[]", ProblemCode.BAD_VALUE),
            ('{"e0":3}', ProblemCode.BAD_VALUE),
            ('{"e0":"soon"}', ProblemCode.BAD_TIMESTAMP),
            ('{"":null}', ProblemCode.BAD_VALUE),
            ('{"line\\nbreak":null}', ProblemCode.BAD_VALUE),
            ("{", ProblemCode.MALFORMED_JSON),
            ("zstd+b64:AAAA", ProblemCode.UNKNOWN_ENCODING),
            ("[" * 200_000, ProblemCode.MALFORMED_JSON),
        ],
    )
    def test_malformed_is_corrupt_state_naming_the_key(self, value: str, code: ProblemCode) -> None:
        """Decoding raises CorruptState naming ``feedback_resolutions``; validate reports it."""
        obj = with_data(stored(archived_state()), **{KEY_FEEDBACK_RESOLUTIONS: value})
        with pytest.raises(CorruptState) as info:
            decode_state(obj)
        assert info.value.field == KEY_FEEDBACK_RESOLUTIONS
        assert codes(find_problems(obj)) == {(KEY_FEEDBACK_RESOLUTIONS, code)}

    def test_salvage_keeps_the_good_resolutions(self) -> None:
        """Salvage reads every readable resolution and reports the others."""
        value = '{"e0":"2024-05-01T12:00:00Z","bad":"soon","e1":null}'
        obj = with_data(stored(archived_state()), **{KEY_FEEDBACK_RESOLUTIONS: value})
        state, problems = salvage_state(obj)
        assert state is not None
        assert state.archived_resolutions == {"e0": T0, "e1": None}
        assert codes(problems) == {(KEY_FEEDBACK_RESOLUTIONS, ProblemCode.BAD_TIMESTAMP)}

    def test_resolutions_that_do_not_fit_the_history_are_reported(self) -> None:
        """Resolutions with no segments, or for entries still in the head, are mismatches."""
        lone = stored(sample_state(archived_resolutions={"e0": T0}))
        assert codes(find_problems(lone)) == {
            (KEY_FEEDBACK_RESOLUTIONS, ProblemCode.INDEX_MISMATCH)
        }
        in_head = stored(archived_state(archived_resolutions={"e2": T0}))
        problems = find_problems(in_head)
        assert codes(problems) == {(KEY_FEEDBACK_RESOLUTIONS, ProblemCode.INDEX_MISMATCH)}
        assert "'e2'" in problems[0].message
        assert decode_state(in_head).archived_resolutions == {"e2": T0}  # still readable

    def test_key_is_not_extra_data(self) -> None:
        """The key is known: never read into extra_data, never accepted from it."""
        assert decode_state(stored(archived_state())).extra_data == {}
        with pytest.raises(InvalidInput):
            encode_state(sample_state(extra_data={KEY_FEEDBACK_RESOLUTIONS: "{}"}))

    def test_a_stored_segment_rev_is_kept_as_an_unknown_key(self) -> None:
        """An index an older remstate wrote with ``rev`` reads, and writes it back as it was."""
        state = archived_state()
        obj = stored(state)
        data = dict(obj.data or {})
        index = json.loads(data[KEY_HISTORY_INDEX])
        index["segments"][0]["rev"] = 1
        data[KEY_HISTORY_INDEX] = json.dumps(index)
        again = decode_state(dataclasses.replace(obj, data=data))
        assert again.segments[0].extra == {"rev": 1}
        assert again.segments[0].cache_key == ("task-42-state-h1", "u1")
        written = json.loads(encode_state(again).data[KEY_HISTORY_INDEX])
        assert written["segments"][0]["rev"] == 1
        assert find_problems(dataclasses.replace(obj, data=data)) == []
