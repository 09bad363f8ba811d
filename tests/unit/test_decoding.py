"""Decoding heads and segments: round trips, segments, resolutions of archived entries."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

import pytest
from hypothesis import given

from remstate.errors import (
    CorruptState,
    InvalidInput,
)
from remstate.schema import (
    ANNOTATION_SCHEMA_VERSION,
    ANNOTATION_TASK_ID,
    GZIP_MARKER,
    KEY_FEEDBACK_RESOLUTIONS,
    KEY_HISTORY_INDEX,
    LABEL_MANAGED_BY,
    LABEL_ROLE,
    LABEL_TASK,
    MAX_DATA_BYTES,
    RESOLUTIONS_LIMIT,
    ErrorRecord,
    HistoryIndex,
    ProblemCode,
    SegmentRef,
    StateTooLarge,
    TaskState,
    decode_segment,
    decode_state,
    encode_segment,
    encode_state,
    find_problems,
    find_segment_problems,
    label_value,
    owner_reference,
    salvage_state,
    segment_metadata,
    segment_name,
    segment_object,
    segment_ref,
    value_bytes,
)
from remstate.store.base import OwnerReference, StoredObject
from tests.helpers import T0
from tests.unit.samples import archived_state, codes, fb, sample_state, stored, with_data
from tests.unit.strategies import FAST, task_states


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
